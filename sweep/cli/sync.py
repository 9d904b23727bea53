"""``sweep sync OUTPUT``: backfill MLflow from a sweep's Parquet results, without duplicates:
the runs and curves ``sweep run`` logs, through the same writer (:func:`sweep.execution.pipeline.sync_tracking`)."""

from __future__ import annotations

import click

from sweep.cli.exit_codes import EXIT_FAILED, spec_errors_exit_2
from sweep.cli.options import output_argument, tracking_uri_option


@click.command()
@output_argument
@tracking_uri_option
@click.option("--replace", is_flag=True, help="Delete and re-log child runs already complete.")
def sync(output: str, tracking_uri: str | None, replace: bool) -> None:
    """Log every finished model x attack of the sweep in OUTPUT to MLflow, with the
    curve plots and worst-case runs (as `sweep run` does at its end).

    Runs are found by their tags: a child run already complete is left alone, so
    running this twice logs nothing twice. Exit code 1 if MLflow is unreachable.
    """
    from sweep.cli.commands import program
    from sweep.execution.pipeline import sync_tracking
    from sweep.tracking.runs import TrackingUnavailable, ui_command

    with spec_errors_exit_2():
        try:
            report = sync_tracking(output, tracking_uri=tracking_uri, replace=replace)
        except TrackingUnavailable as exc:
            click.echo(f"error: MLflow unreachable: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_FAILED) from exc
    click.echo(f"MLflow: {len(report.logged)} run(s) logged, {len(report.already)} already there"
               + (f", {len(report.waiting)} waiting for cells" if report.waiting else ""))
    if report.curves_error:
        click.echo(f"warning: curve plots not logged to MLflow ({report.curves_error})", err=True)
    from sweep.results.manifest import Manifest

    plan = Manifest(output).read_plan()
    uri = tracking_uri or (plan.tracking_uri if plan is not None else None) or ""
    click.echo(f"view: {ui_command(uri, program('mlflow'))}")
