"""The ``sweep`` command group. Subcommands live one per module and load lazily,
so ``sweep --help`` stays fast and a subcommand's imports (Ray, MLflow, torch)
are paid only when it runs.

Exit codes: 0 success, 1 a failed run, 2 bad input (click's usage errors and
:class:`~sweep.errors.SpecError`).
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# subcommand -> "module:attribute"
COMMANDS: dict[str, str] = {
    "run": "sweep.cli.run:run",
    "validate": "sweep.cli.validate:validate",
    "plan": "sweep.cli.plan:plan",
    "sync": "sweep.cli.sync:sync",
    "curves": "sweep.cli.curves:curves",
    "report": "sweep.cli.report:report",
    "submit": "sweep.cli.submit:submit",
    "status": "sweep.cli.status:status",
    "logs": "sweep.cli.logs:logs",
    "attacks": "sweep.cli.attacks:attacks",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(
            name for name in COMMANDS if importlib.util.find_spec(COMMANDS[name].split(":")[0])
        )

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise


@click.group(cls=LazyGroup)
@click.version_option(package_name="attack-sweep")
def cli() -> None:
    """attack-sweep: robustness curves for models x attacks x epsilons."""
