"""``sweep report OUTPUT [OTHER] -o report.html``: the self-contained HTML report of a
sweep, or of two sweeps side by side. It only reads: the results, the plan and, for
the links to each run, MLflow (the curves were logged there by ``sweep run`` or
``sweep sync``)."""

from __future__ import annotations

from pathlib import Path

import click

from sweep.cli.curves import parse_breaking_eps
from sweep.cli.exit_codes import EXIT_BAD_INPUT
from sweep.cli.options import OUTPUT, output_argument, sweep_id_option, tracking_uri_option


@click.command()
@output_argument
@click.argument("other", type=OUTPUT, required=False)
@click.option(
    "-o", "--output-file", "out_file", type=click.Path(dir_okay=False), default="report.html",
    show_default=True, help="The HTML file to write.",
)  # fmt: skip
@click.option(
    "--epsilon", type=float, default=None,
    help="Heatmap shown first (must be in the grid; all stay selectable). "
    "Default: the middle epsilon of the L-inf grid.",
)  # fmt: skip
@sweep_id_option
@click.option(
    "--breaking-eps", multiple=True, metavar="NORM=EPS",
    help="A budget that breaks any model, for the sanity flag (default linf=0.5). Repeatable.",
)  # fmt: skip
@click.option(
    "--mlflow/--no-mlflow", "to_mlflow", default=True, show_default=True,
    help="Link each curve to its MLflow run (reads MLflow; the report never writes to it).",
)  # fmt: skip
@tracking_uri_option
@click.option("--experiment", default=None, help="MLflow experiment (default: the sweep's).")
@click.option(
    "--mlflow-ui", default=None, metavar="URL",
    help="Where the MLflow UI answers, for the links to each run (default: an http(s) "
    "tracking URI itself, else http://127.0.0.1:5000 as `mlflow ui` serves).",
)  # fmt: skip
def report(
    output: str,
    other: str | None,
    out_file: str,
    epsilon: float | None,
    sweep_id: str | None,
    breaking_eps: tuple[str, ...],
    to_mlflow: bool,
    tracking_uri: str | None,
    experiment: str | None,
    mlflow_ui: str | None,
) -> None:
    """Write one HTML file for the sweep in OUTPUT: curves per model with CI bands
    and the worst case, each attack's settings, cost and MLflow run, a model x
    attack heatmap and a per-class table per epsilon, minimal perturbations,
    sanity flags, and the spec and versions. It needs no network to view.

    With a second folder OTHER, a page comparing the two sweeps side by side
    (robust accuracy of each shared point, the difference, whether the 95%
    intervals overlap; each sweep's curves and flags); MLflow is not read then.
    The report never writes to MLflow: `sweep run` and `sweep sync` log the curves.
    Exit code 2 if a folder holds no results or --epsilon is not in the grid.
    """
    from sweep.analysis.collect import collect

    try:
        breaking = parse_breaking_eps(breaking_eps)
        data = collect(output, sweep_id=sweep_id, breaking_eps=breaking)
        if other is not None:
            from sweep.report.compare import render_comparison

            second = collect(other, sweep_id=sweep_id, breaking_eps=breaking)
            names = _names(output, other, data, second)
            _write(Path(out_file), render_comparison(data, second, names))
            click.echo(f"wrote {out_file}: {names[0]} vs {names[1]}")
            return
    except (ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_BAD_INPUT) from exc

    plan_uri, plan_experiment = data.provenance.tracking
    uri, exp = tracking_uri or plan_uri, experiment or plan_experiment
    enabled = data.provenance.plan.mlflow_enabled or tracking_uri
    links = {}
    if to_mlflow and enabled and uri and exp:
        from sweep.report.details import run_links

        links = run_links(uri, exp, sweep_id or data.provenance.sweep_id, mlflow_ui)
    from sweep.report.builder import render

    try:
        page = render(data, epsilon=epsilon, links=links)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_BAD_INPUT) from exc
    path = _write(Path(out_file), page)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, {len(data.flags)} sanity flags, "
               f"{len(links)} MLflow run links)")
    for flag in data.flags:
        click.echo(f"  ! {flag.code}: {flag.message}")


def _write(path: Path, page: str) -> Path:
    from sweep.results import atomic

    return atomic.write_file(path, page.encode("utf-8"))


def _names(a: str, b: str, data_a, data_b) -> tuple[str, str]:
    """How the comparison labels its two sides: the sweep names, else the folders."""
    names = tuple(d.provenance.plan.name for d in (data_a, data_b))
    if all(names) and names[0] != names[1]:
        return names  # type: ignore[return-value]
    return (str(a), str(b))

