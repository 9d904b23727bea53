"""``sweep curves OUTPUT``: robustness curves of a results folder, with sanity flags.

Everything is computed from the Parquet rows (:mod:`sweep.analysis.curves`); the same
numbers come back from ``pd.read_parquet(OUTPUT)`` (docs/curves-and-dashboards.md).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from sweep.cli.exit_codes import EXIT_BAD_INPUT
from sweep.cli.options import output_argument, sweep_id_option


def parse_breaking_eps(values: Sequence[str]) -> dict[str, float] | None:
    """``("linf=0.5", "l2=27.7")`` -> ``{"linf": 0.5, "l2": 27.7}``; ``None`` if empty."""
    if not values:
        return None
    out = {}
    for item in values:
        norm, sep, eps = item.partition("=")
        try:
            out[norm.strip()] = float(eps)
        except ValueError:
            sep = ""
        if not sep or not norm.strip():
            raise click.BadParameter(
                f"expected NORM=EPS, got {item!r}", param_hint="--breaking-eps"
            )
    return out


def load(output: str, sweep_id: str | None, breaking_eps: Sequence[str]):
    """:func:`sweep.analysis.collect.collect`, with bad folders turned into exit code 2."""
    from sweep.analysis.collect import collect

    try:
        return collect(output, sweep_id=sweep_id, breaking_eps=parse_breaking_eps(breaking_eps))
    except (ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_BAD_INPUT) from exc


def render_tables(data, console) -> None:
    """One rich table per model x norm: attacks (worst case last) x epsilons, each cell
    robust accuracy over its Wilson 95% interval; then clean accuracy, AUC and n."""
    from rich.table import Table

    from sweep.analysis.curves import ENSEMBLE

    summary = data.summary.set_index(["model", "attack", "norm"])
    for (model, norm), block in data.table.groupby(["model", "norm"], sort=True):
        eps = sorted(block["epsilon"].unique())
        table = Table(title=f"{model} — {norm}: robust accuracy [95% CI]", title_justify="left")
        table.add_column("attack", style="bold")
        for e in eps:
            table.add_column(f"ε={e:g}", justify="right")
        for col in ("clean", "AUC", "n"):
            table.add_column(col, justify="right", style="dim" if col == "n" else None)
        for attack, rows in block.groupby("attack", sort=False):
            by_eps = rows.set_index("epsilon")
            cells = []
            for e in eps:
                if e not in by_eps.index:
                    cells.append("–")
                    continue
                r = by_eps.loc[e]
                cells.append(
                    f"{r['robust_accuracy']:.1%}\n[dim]{r['ci_low']:.0%}–{r['ci_high']:.0%}[/dim]"
                )
            s = summary.loc[(model, attack, norm)]
            label = "worst case" if attack == ENSEMBLE else str(attack)
            table.add_row(
                label, *cells, f"{s['clean_accuracy']:.1%}", f"{s['auc']:.1%}", str(int(s["n"])),
                end_section=attack == ENSEMBLE,
            )  # fmt: skip
            hits = rows.set_index("epsilon")["targeted_success_rate"]
            if hits.notna().any():  # a targeted attack: its own criterion beside robustness
                table.add_row(
                    "[dim]  target hit[/dim]",
                    *(f"[dim]{hits[e]:.1%}[/dim]" if e in hits.index else "–" for e in eps),
                    "", "", "",
                )  # fmt: skip
        console.print(table)
    render_cascades(data.cascades, console)
    render_transfer(data.transfer, console)
    minimal = data.summary[data.summary["attack_kind"] == "minimal"]
    if len(minimal):
        table = Table(title="minimization attacks", title_justify="left")
        for col in ("model", "attack", "norm", "median minimal perturbation", "not found"):
            table.add_column(col, justify="left" if col in ("model", "attack", "norm") else "right")
        for r in minimal.itertuples(index=False):
            table.add_row(
                r.model,
                r.attack,
                r.norm,
                f"{r.median_min_perturbation:.4g}",
                str(r.n_min_not_found),
            )
        console.print(table)


def titled_table(title: str, first: str, columns: Sequence[str]):
    """A rich table: ``first`` (bold) then ``columns`` (right-aligned)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column(first, style="bold")
    for col in columns:
        table.add_column(col, justify="right")
    return table


def render_cascades(cascades, console) -> None:
    """Per cascade: robust accuracy once each member has run, and how many it broke."""
    for (model, attack, norm), block in cascades.groupby(["model", "attack", "norm"], sort=True):
        eps = sorted(block["epsilon"].unique())
        table = titled_table(f"{model} — cascade {attack} ({norm}): robust accuracy after each member "
                             "[samples it broke]", "member", [f"ε={e:g}" for e in eps])
        for member, rows in block.groupby("position", sort=True):
            by_eps = rows.set_index("epsilon")
            table.add_row(
                f"{member + 1}. {rows['member'].iloc[0]}",
                *(f"{by_eps.loc[e, 'robust_accuracy_after']:.1%} [{int(by_eps.loc[e, 'n_broken'])}]"
                  for e in eps),
            )  # fmt: skip
        console.print(table)


def render_transfer(transfer, console) -> None:
    """Per attack: robust accuracy of each target model (columns) on the adversarials
    crafted on each source model (rows), one table per epsilon."""
    for (attack, norm, eps), block in transfer.groupby(["attack", "norm", "epsilon"], sort=True):
        targets = sorted(block["model"].unique())
        table = titled_table(f"transfer — {attack} ({norm}) ε={eps:g}: robust accuracy of the target "
                             "on the source's adversarials", "source \\ target", [str(t) for t in targets])
        for source, rows in block.groupby("source_model", sort=True):
            by_target = rows.set_index("model")["robust_accuracy"]
            table.add_row(str(source), *(f"{by_target[t]:.1%}" if t in by_target.index else "–" for t in targets))
        console.print(table)


def render_notes(notes, console) -> None:
    """How the rows were read (e.g. files of an older schema version)."""
    for note in notes:
        console.print(f"[cyan]note:[/cyan] {note}", highlight=False)


def render_flags(flags, console) -> None:
    if not flags:
        console.print("[green]no sanity flag[/green] (checks: docs/curves-and-dashboards.md)")
        return
    console.print(f"[bold yellow]{len(flags)} sanity flag(s):[/bold yellow]")
    for f in flags:
        console.print(f"[yellow]! {f.code}[/yellow] {f.message}", highlight=False)
        if f.cells:
            console.print(f"  cells: {', '.join(f.cells)}", style="dim", highlight=False)


@click.command()
@output_argument
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "parquet"]), default="table",
    show_default=True, help="table: readable in a terminal; csv/parquet: the curve table.",
)  # fmt: skip
@click.option(
    "-o", "--output-file", "out_file", type=click.Path(dir_okay=False), default=None,
    help="Write here instead of stdout (required for parquet).",
)  # fmt: skip
@sweep_id_option
@click.option(
    "--transfer", "transfer", is_flag=True,
    help="csv/parquet: the transfer table (source_model x model robust accuracy per attack and epsilon).",
)  # fmt: skip
@click.option(
    "--breaking-eps", multiple=True, metavar="NORM=EPS",
    help="A budget that breaks any model, for the sanity flag (default linf=0.5). Repeatable.",
)  # fmt: skip
def curves(
    output: str, fmt: str, out_file: str | None, sweep_id: str | None, transfer: bool,
    breaking_eps: tuple[str, ...],
) -> None:
    """Robust accuracy per model x attack x epsilon of the sweep in OUTPUT.

    Columns: model, attack, norm, epsilon, robust_accuracy, ci_low, ci_high (Wilson
    95%), clean_accuracy, n, ... The worst case over all attacks of a norm is the
    attack 'ensemble'. Sanity flags (gradient masking, broken attacks) are printed
    too (to stderr with csv/parquet, so the data stays clean). A sweep with
    ``transfer:`` also shows, per attack and epsilon, the robust accuracy of each target
    model on each source model's adversarials (``--transfer``: that table as csv/parquet).
    """
    if fmt == "parquet" and out_file is None:
        raise click.BadParameter("parquet needs -o FILE", param_hint="--format")
    data = load(output, sweep_id, breaking_eps)
    from rich.console import Console

    if fmt == "table":
        if out_file:
            with open(out_file, "w", encoding="utf-8") as fh:
                console = Console(file=fh, width=160, no_color=True)
                render_notes(data.notes, console)
                render_tables(data, console)
                render_flags(data.flags, console)
            click.echo(f"wrote {out_file}")
        else:
            console = Console()
            render_notes(data.notes, console)
            render_tables(data, console)
            render_flags(data.flags, console)
        return
    frame = data.transfer if transfer else data.table
    if fmt == "csv":
        if out_file:
            frame.to_csv(out_file, index=False)
        else:
            frame.to_csv(sys.stdout, index=False)
    else:
        frame.to_parquet(out_file, index=False)
    render_notes(data.notes, Console(stderr=True))
    render_flags(data.flags, Console(stderr=True))
    if out_file:
        click.echo(f"wrote {out_file} ({len(frame)} rows)", err=True)
