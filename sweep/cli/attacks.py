"""``sweep attacks``: the registered attacks, their kind, norms and hyper-parameters."""

from __future__ import annotations

import inspect

import click


@click.command()
@click.argument("name", required=False)
def attacks(name: str | None) -> None:
    """List the attacks a spec may name (or one attack's parameters), with defaults."""
    from rich.console import Console
    from rich.table import Table

    from sweep.attacks import attack_class, attack_params, available
    from sweep.cli.exit_codes import EXIT_BAD_INPUT
    from sweep.errors import did_you_mean

    names = available()
    if name is not None and name not in names:
        click.echo(f"error: unknown attack {name!r}; {did_you_mean(name, names)}", err=True)
        raise click.exceptions.Exit(EXIT_BAD_INPUT)
    table = Table("attack", "kind", "norms", "parameters (default)", "targeted")
    for n in [name] if name else names:
        try:
            cls = attack_class(n)
            params = attack_params(n)
        except ImportError as exc:
            table.add_row(n, "-", "-", f"(not importable: {exc})", "-")
            continue
        shown = ", ".join(
            f"{k}={'(required)' if v is inspect.Parameter.empty else repr(v)}"
            for k, v in params.items() if k != "norm"
        )
        table.add_row(n, cls.kind, ", ".join(cls.norms), shown or "-",
                      "yes" if cls.supports_targeted else "no")
    Console(width=max(120, Console().width)).print(table)
