"""``sweep report OUTPUT -o report.html``: the self-contained HTML report of a sweep."""

from __future__ import annotations

from pathlib import Path

import click

from sweep.cli.curves import parse_breaking_eps
from sweep.cli.exit_codes import EXIT_BAD_INPUT
from sweep.cli.output_arg import OUTPUT


@click.command()
@click.argument("output", type=OUTPUT)
@click.option(
    "-o", "--output-file", "out_file", type=click.Path(dir_okay=False), default="report.html",
    show_default=True, help="The HTML file to write.",
)  # fmt: skip
@click.option(
    "--epsilon", type=float, default=None,
    help="Heatmap shown first (must be in the grid; all stay selectable). "
    "Default: the middle epsilon of the L-inf grid.",
)  # fmt: skip
@click.option("--sweep-id", default=None, help="Only this sweep's rows (a folder holding several).")
@click.option(
    "--breaking-eps", multiple=True, metavar="NORM=EPS",
    help="A budget that breaks any model, for the sanity flag (default linf=0.5). Repeatable.",
)  # fmt: skip
@click.option(
    "--mlflow/--no-mlflow", "to_mlflow", default=True, show_default=True,
    help="Also log the curves (PNGs, CI metrics, worst-case runs) to the sweep's MLflow runs.",
)  # fmt: skip
@click.option("--tracking-uri", default=None, help="MLflow store (default: the sweep's).")
@click.option("--experiment", default=None, help="MLflow experiment (default: the sweep's).")
def report(
    output: str,
    out_file: str,
    epsilon: float | None,
    sweep_id: str | None,
    breaking_eps: tuple[str, ...],
    to_mlflow: bool,
    tracking_uri: str | None,
    experiment: str | None,
) -> None:
    """Write one HTML file for the sweep in OUTPUT: curves per model with CI bands
    and the worst case, a model x attack heatmap per epsilon, minimal
    perturbations, sanity flags, and the spec and versions. It needs no network
    to view. Exit code 2 if OUTPUT holds no results or --epsilon is not in the grid.
    """
    from sweep.report.builder import render
    from sweep.report.data import collect

    try:
        data = collect(output, sweep_id=sweep_id, breaking_eps=parse_breaking_eps(breaking_eps))
        page = render(data, epsilon=epsilon)
    except (ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_BAD_INPUT) from exc
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, {len(data.flags)} sanity flags)")
    for flag in data.flags:
        click.echo(f"  ! {flag.code}: {flag.message}")

    plan_uri, plan_experiment = data.provenance.tracking
    uri, exp = tracking_uri or plan_uri, experiment or plan_experiment
    enabled = data.provenance.plan.get("mlflow_enabled", True) or tracking_uri
    if not to_mlflow or not enabled or not (uri and exp):
        return
    from sweep.mlflow_curves import log_curves
    from sweep.tracking import TrackingUnavailable

    try:
        logged = log_curves(output, uri, exp, sweep_id=sweep_id)
    except TrackingUnavailable as exc:
        # the report is written; MLflow is a copy of what Parquet already holds
        click.echo(f"warning: curves not logged to MLflow ({exc})", err=True)
        return
    click.echo(
        f"MLflow: curves logged to {len(logged.children_logged)} run(s) "
        f"({len(logged.children_already)} up to date), parent {logged.parent_run_id}"
    )
