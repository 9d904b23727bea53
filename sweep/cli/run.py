"""``sweep run SPEC``: run (or resume) a sweep on an embedded Ray instance or a cluster."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pandas as pd

from sweep.cli.exit_codes import EXIT_FAILED, spec_errors_exit_2


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--fresh", is_flag=True, help="Recompute every cell, even those already done.")
@click.option("--address", default=None,
              help="Join a Ray cluster: 'auto' or HOST:PORT. Default: a fresh local Ray instance.")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None,
              help="CPUs of the local Ray instance (default: all). Ignored with --address.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run(spec_path: str, fresh: bool, address: str | None, num_cpus: int | None, no_progress: bool) -> None:
    """Run the sweep SPEC; a re-run computes only the cells not done yet.

    Exit code 0 when every cell is done, 1 if any cell failed (each is listed with
    its cell id and error), 2 if the spec is invalid (nothing is run or written).
    """
    from sweep.pipeline import prepare, read_rows, run_sweep
    from sweep.tracking import ui_command

    with spec_errors_exit_2():
        prep = prepare(spec_path)
        outcome = run_sweep(prep, fresh=fresh, address=address, num_cpus=num_cpus,
                            progress=not no_progress, echo=click.echo)
    spec = prep.spec
    d = outcome.driver
    if d.computed or d.failures:
        click.echo(
            f"computed {d.computed} cell(s) ({d.samples} samples) in {d.wall_seconds:.1f}s on "
            f"{d.workers} worker(s) (Ray start {d.ray_start_seconds:.1f}s, attack time "
            f"{d.attack_seconds:.1f}s, retries {d.retries})"
        )
    from sweep.manifest import Manifest

    files = [r.file for r in Manifest(spec.output).verified(c.cell_id for c in prep.cells).values()]
    rows = read_rows(spec.output, files)
    click.echo("")
    click.echo(robustness_table(rows))
    click.echo("")
    out = shlex.quote(str(spec.output))
    click.echo(f"results: {spec.output}  ({len(files)} Parquet files, {len(rows)} rows)")
    click.echo(f"pandas:  python -c \"import pandas as pd; df = pd.read_parquet({str(spec.output)!r}); "
               "print(df.groupby(['model', 'attack', 'epsilon'], observed=True).robust.mean())\"")
    if spec.mlflow.enabled:
        if outcome.tracking_error:
            click.echo(f"MLflow unreachable ({outcome.tracking_error}); every row is in Parquet. "
                       f"When it is back: sweep sync {out}", err=True)
        else:
            click.echo(f"mlflow:  {ui_command(spec.tracking_uri())}")
    if outcome.failures:
        click.echo(f"\n{len(outcome.failures)} cell(s) failed after {spec.retries} retries "
                   f"(details: {Path(spec.output) / '_manifest' / 'failures.jsonl'}):", err=True)
        for f in outcome.failures[:50]:
            click.echo(f"  cell {f.cell_id} ({f.model} / {f.attack}): {f.error}", err=True)
        if len(outcome.failures) > 50:
            click.echo(f"  ... and {len(outcome.failures) - 50} more", err=True)
        raise click.exceptions.Exit(EXIT_FAILED)


def robustness_table(rows: pd.DataFrame) -> str:
    """Robust accuracy per model x attack (rows) and epsilon (columns), one block per norm.

    Robust accuracy = mean of ``robust`` over samples (clean errors count as not
    robust); ``clean`` = mean of ``clean_correct``. Computed from the Parquet rows.
    """
    if rows.empty:
        return "(no results yet)"
    blocks = []
    for norm, part in rows.groupby("norm", observed=True, sort=True):
        acc = part.pivot_table(index=["model", "attack"], columns="epsilon", values="robust",
                               aggfunc="mean", observed=True)
        acc.columns = [f"{e:g}" for e in acc.columns]
        clean = (part.drop_duplicates(["cell_id", "sample_id"])
                 .groupby(["model", "attack"], observed=True)["clean_correct"].mean())
        acc.insert(0, "clean", clean)
        blocks.append(f"robust accuracy, {norm} (columns: epsilon)\n"
                      + acc.to_string(float_format=lambda v: f"{v:.3f}"))
    return "\n\n".join(blocks)
