"""``sweep attacks [NAME]``: the registered attacks, their kind, norms, paper and
hyper-parameters, read from the attack modules' source (:mod:`sweep.attacks.catalog`):
no torch import, so it answers at once."""

from __future__ import annotations

import inspect

import click


def _default(value: object) -> str:
    return "(required)" if value is inspect.Parameter.empty else repr(value)


@click.command()
@click.argument("name", required=False)
def attacks(name: str | None) -> None:
    """List the attacks a spec may name, with their defaults; with NAME, that attack's
    paper and what each parameter (and a None default) means."""
    from rich.console import Console
    from rich.table import Table

    from sweep.attacks.catalog import describe
    from sweep.attacks.registry import UnknownAttackError, available
    from sweep.cli.exit_codes import EXIT_BAD_INPUT

    console = Console(width=max(150, Console().width))
    if name is not None:
        try:
            info = describe(name)
        except UnknownAttackError as exc:
            click.echo(f"error: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_BAD_INPUT) from None
        console.print(f"[bold]{info.name}[/bold]: {info.summary}", highlight=False)
        if info.paper and info.paper != info.summary:
            console.print(f"paper: {info.paper}", highlight=False)
        console.print(
            f"kind: {info.kind} · norms: {', '.join(info.norms)} · targeted: "
            f"{'yes' if info.supports_targeted else 'no'} · "
            f"{'gradient (white-box)' if info.uses_gradients else 'gradient-free'}",
            highlight=False,
        )
        defaults = ", ".join(f"{k}={_default(v)}" for k, v in info.params.items())
        console.print(f"defaults: {defaults}", highlight=False)
        table = Table("parameter", "default", "takes", "meaning", show_lines=False)
        for param, default in info.params.items():
            table.add_row(param, _default(default), info.takes.get(param, ""), info.meaning(param))
        console.print(table)
        return
    table = Table("attack", "kind", "norms", "parameters (default)", "targeted", "paper")
    for n in available():
        info = describe(n)
        shown = ", ".join(f"{k}={_default(v)}" for k, v in info.params.items() if k != "norm")
        table.add_row(n, info.kind, ", ".join(info.norms), shown or "-",
                      "yes" if info.supports_targeted else "no", info.arxiv)
    console.print(table)
    console.print("`sweep attacks NAME`: the paper and what each parameter means.")
