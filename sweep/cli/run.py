"""``sweep run SPEC``: run (or resume) a sweep on an embedded Ray instance or a cluster.

This module only prints: the run, its analysis and its MLflow logging are
:func:`sweep.execution.pipeline.run_sweep`'s, which returns them."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator

import click

from sweep.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, spec_errors_exit_2
from sweep.cli.options import join_address_option


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--fresh", is_flag=True, help="Recompute every cell, even those already done.")
@join_address_option
@click.option("--num-cpus", type=click.IntRange(min=1), default=None,
              help="CPUs of the local Ray instance (default: all). Ignored with --address.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run(spec_path: str, fresh: bool, address: str | None, num_cpus: int | None, no_progress: bool) -> None:
    """Run the sweep SPEC; a re-run computes only the cells not done yet.

    Exit code 0 when every cell is done, 1 if any cell failed (each is listed with
    its cell id and error), 2 if the spec is invalid (nothing is run or written),
    130 if interrupted (Ctrl-C; the MLflow parent run is marked KILLED).
    """
    try:
        _run(spec_path, fresh, address, num_cpus, no_progress)
    except KeyboardInterrupt:  # anywhere: computing cells, logging, printing the tables
        click.echo("\ninterrupted: finished cells are kept; the same command resumes the rest",
                   err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _run(spec_path: str, fresh: bool, address: str | None, num_cpus: int | None,
         no_progress: bool) -> None:
    from sweep.cli.commands import program, python
    from sweep.execution.pipeline import model_check_lines, prepare, run_sweep
    from sweep.execution.pool import WorkerPool
    from sweep.results.manifest import Manifest
    from sweep.tracking.runs import ui_command

    with spec_errors_exit_2(), disk_full_exit_1(spec_path):
        prep = prepare(spec_path)
        for line in model_check_lines(prep):  # before the run: the numbers may not be trusted
            click.echo(line, err=True)
        outcome = run_sweep(prep, fresh=fresh, address=address, num_cpus=num_cpus,
                            progress=not no_progress, echo=click.echo,
                            pool=click.get_current_context().find_object(WorkerPool))  # a caller's (tests)
    spec = prep.spec
    d = outcome.driver
    if d.computed or d.failures:
        click.echo(
            f"computed {d.computed} cell(s) ({d.samples} samples) in {d.wall_seconds:.1f}s on "
            f"{d.workers} worker(s), {d.nodes} node(s) (Ray start {d.ray_start_seconds:.1f}s, attack time "
            f"{d.attack_seconds:.1f}s, retries {d.retries})"
        )
    files = summarize(outcome)
    out = shlex.quote(str(spec.output))
    click.echo(f"results: {spec.output}  ({files} Parquet files)")
    sweep_cmd = program("sweep")
    click.echo(f"pandas:  {python()} -c {shell_quote(pandas_snippet(spec.output))}")
    click.echo(f"curves:  {sweep_cmd} curves {out}    report: {sweep_cmd} report {out} -o report.html")
    if spec.mlflow.enabled:
        curves_error = getattr(outcome.tracking_report, "curves_error", None)
        if outcome.tracking_error:
            click.echo(f"MLflow unreachable ({outcome.tracking_error}); every row is in Parquet. "
                       f"When it is back: {sweep_cmd} sync {out}", err=True)
        elif curves_error:
            click.echo(f"curve plots not logged to MLflow ({curves_error}); later: "
                       f"{sweep_cmd} sync {out}", err=True)
        else:
            click.echo(f"mlflow:  {ui_command(spec.tracking_uri(), program('mlflow'))}")
    if d.gave_up:
        click.echo(f"\nstopped waiting: {d.gave_up}. Check what the autoscaler does (`ray status` on "
                   "the head), or allow it longer with resources.scale_timeout", err=True)
    if outcome.failures:
        click.echo(f"\n{len(outcome.failures)} cell(s) failed after {spec.retries} retries "
                   f"(details: {Manifest(spec.output).failures_location()}):", err=True)
        for f in outcome.failures[:50]:
            click.echo(f"  cell {f.cell_id} ({f.model} / {f.attack}): {f.error}", err=True)
        if len(outcome.failures) > 50:
            click.echo(f"  ... and {len(outcome.failures) - 50} more", err=True)
        if d.disk_full:
            click.echo(f"error: {disk_full_message(spec.output, spec_path, d.disk_full)}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED)


def disk_full_message(output: object, spec_path: str, error: str) -> str:
    """One line: the disk is full, where, what stopped, and how to resume."""
    return (f"the disk holding {output} is full ({error}); the sweep stopped dispatching. "
            f"Free space there, then run `sweep run {shlex.quote(spec_path)}` again: it resumes, "
            "keeping every finished cell")


@contextlib.contextmanager
def disk_full_exit_1(spec_path: str) -> Iterator[None]:
    """A full disk anywhere in the run (the plan, MLflow's SQLite store, ...) is one line, exit 1."""
    from sweep.results.store import is_disk_full

    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        output = getattr(exc, "filename", None) or "the output"
        click.echo(f"error: {disk_full_message(output, spec_path, str(exc).splitlines()[0])}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from exc


def shell_quote(code: str) -> str:
    """``code`` as one shell word: in double quotes when nothing in it is special there
    (the Python inside uses single quotes), else :func:`shlex.quote`."""
    if not any(c in code for c in '"$`\\!'):
        return f'"{code}"'
    return shlex.quote(code)


def pandas_snippet(output: object) -> str:
    """Python that reads the results with pandas: ``pd.read_parquet(folder)``, or for an
    object-store URI through pyarrow's filesystem (pandas alone would need s3fs/gcsfs)."""
    show = "print(df.groupby(['model', 'attack', 'epsilon'], observed=True).robust.mean())"
    text = str(output)
    if "://" not in text or text.startswith("file://"):
        return f"import pandas as pd; df = pd.read_parquet({text!r}); {show}"
    return ("import pandas as pd, pyarrow.fs as pf; "
            f"fs, path = pf.FileSystem.from_uri({text!r}); "
            f"df = pd.read_parquet(path, filesystem=fs); {show}")


def summarize(outcome) -> int:
    """Print the robustness curves (with the worst case over attacks and the sanity
    flags) of the run's analysis, built by the pipeline from the manifest-verified
    files. Returns how many result files they are."""
    from rich.console import Console

    from sweep.cli.curves import render_flags, render_tables

    data = outcome.analysis
    if data is None:
        click.echo(f"(no robustness table: {outcome.analysis_error})")
        return 0
    console = Console(width=max(Console().width, 120))
    click.echo("")
    render_tables(data, console)
    render_flags(data.flags, console)
    click.echo("")
    return int(data.results["cell_id"].nunique())
