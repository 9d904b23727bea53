"""Arguments and options several ``sweep`` commands share, each defined once here.

- :data:`output_argument` (``OUTPUT``): a results folder or an object-store URI
  (``sweep curves / report / sync``);
- :data:`sweep_id_option` (``--sweep-id``): one sweep's rows of a folder holding several;
- :data:`address_option` (``--address``): the Ray dashboard a sweep job is sent to
  (``sweep submit / status / logs``); default ``$RAY_API_SERVER_ADDRESS``, else
  ``$RAY_ADDRESS``, the order of Ray's own ``ray job`` commands;
- :data:`join_address_option` (``--address`` of ``sweep run``): the Ray cluster to
  join (``auto`` or ``HOST:PORT``); default ``$RAY_ADDRESS``, as ``ray.init`` reads it;
- :data:`tracking_uri_option` (``--tracking-uri``): the MLflow store; default
  ``$MLFLOW_TRACKING_URI``, as MLflow's own CLI.

An option given on the command line always wins over its environment variable.
"""

from __future__ import annotations

import os
from typing import Any

import click

JOB_API_ADDRESS_VARS: tuple[str, ...] = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
"""Where ``--address`` of the Job API commands comes from when not given, first set wins."""

JOIN_ADDRESS_VAR = "RAY_ADDRESS"
TRACKING_URI_VAR = "MLFLOW_TRACKING_URI"


class OutputLocation(click.ParamType):
    """A sweep's ``output``: an existing local folder (returned absolute) or a URI
    such as ``s3://bucket/prefix?region=...`` under which objects exist (returned
    as written). Anything else is a usage error (exit 2) before any work."""

    name = "OUTPUT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from sweep.results import store

        text = str(value)
        try:
            if not store.is_local(text):
                if not store.output_exists(text):
                    self.fail(f"{text!r}: no results there (no object under this prefix)", param, ctx)
                return text
            path = store.local_path(text).expanduser().resolve()
        except (OSError, ValueError) as exc:  # pyarrow: unknown scheme, bad option, unreachable
            self.fail(f"{text!r}: {exc}".splitlines()[0], param, ctx)
        if not path.is_dir():
            self.fail(f"{text!r}: no such folder", param, ctx)
        return str(path)


OUTPUT = OutputLocation()

output_argument = click.argument("output", type=OUTPUT)

sweep_id_option = click.option(
    "--sweep-id", default=None, help="Only this sweep's rows (a folder holding several)."
)

address_option = click.option(
    "--address", envvar=list(JOB_API_ADDRESS_VARS), show_envvar=True,
    help="The Ray dashboard's URL, e.g. http://127.0.0.1:8265 (`ray dashboard cluster.yaml` "
    "forwards the head's port there); if not given, the first of these variables set.",
)  # fmt: skip

join_address_option = click.option(
    "--address", default=None, envvar=JOIN_ADDRESS_VAR, show_envvar=True,
    help="Join a Ray cluster: 'auto' or HOST:PORT. Default: a fresh local Ray instance, "
    "unless RAY_ADDRESS is set.",
)  # fmt: skip

tracking_uri_option = click.option(
    "--tracking-uri", default=None, envvar=TRACKING_URI_VAR, show_envvar=True,
    help="MLflow tracking store. Default: the one the sweep was run with, unless "
    "MLFLOW_TRACKING_URI is set.",
)  # fmt: skip


def address_source(ctx: click.Context | None = None, name: str = "address") -> str:
    """Where option ``name``'s value came from, for error messages: ``--address``, or
    ``$VAR`` when the option was left out and an environment variable supplied it."""
    ctx = ctx or click.get_current_context()
    if ctx.get_parameter_source(name) is not click.core.ParameterSource.ENVIRONMENT:
        return f"--{name.replace('_', '-')}"
    param = next((p for p in ctx.command.params if p.name == name), None)
    envvars = getattr(param, "envvar", None) or ()
    for var in [envvars] if isinstance(envvars, str) else envvars:
        if os.environ.get(var):
            return f"${var}"
    return f"--{name.replace('_', '-')}"  # pragma: no cover - click found it, we do not
