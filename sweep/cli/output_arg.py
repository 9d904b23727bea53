"""The OUTPUT argument of ``sweep sync / curves / report``: a results folder or an object-store URI."""

from __future__ import annotations

from typing import Any

import click


class OutputLocation(click.ParamType):
    """A sweep's ``output``: an existing local folder (returned absolute) or a URI
    such as ``s3://bucket/prefix?region=...`` under which objects exist (returned
    as written). Anything else is a usage error (exit 2) before any work."""

    name = "OUTPUT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from sweep import store

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
