"""``sweep plan SPEC``: the dry run: which cells, how many, how many are done already."""

from __future__ import annotations

import click

from sweep.cli.exit_codes import spec_errors_exit_2


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--show", default=20, show_default=True, help="How many cells to list (0: none).")
@click.option("--probe/--no-probe", default=False, show_default=True,
              help="Also load every model and run it on one sample (as `sweep validate` does).")
def plan(spec_path: str, show: int, probe: bool) -> None:
    """Expand SPEC into cells and say which are done in its output folder. Runs nothing.

    Cells are model x attack x data shard, each with all of its norm's epsilons.
    A cell is done when the manifest lists it and its Parquet file is intact (and
    its stored adversarials, when the spec keeps them, too).
    """
    from collections import Counter

    from sweep.execution.pipeline import complete_cells, prepare
    from sweep.results.manifest import Manifest

    with spec_errors_exit_2():
        prep = prepare(spec_path, probe_models=probe)
    spec, cells = prep.spec, prep.cells
    done = complete_cells(spec, Manifest(spec.output), cells)
    total = len(cells)
    per_pair = Counter((c.model, c.attack) for c in cells)
    done_pair = Counter((c.model, c.attack) for c in cells if c.cell_id in done)
    click.echo(f"sweep {spec.name!r} (id {prep.sweep_id}), output {spec.output}")
    click.echo(
        f"{len(spec.models)} model(s) x {len(spec.attacks)} attack(s) x {prep.layout.num_shards} "
        f"shard(s) of up to {spec.dataset.shard_size} samples ({prep.layout.num_samples} in all)"
    )
    click.echo(f"cells: {total}, done: {len(done)}, to compute: {total - len(done)}")
    if prep.transfers:
        click.echo(f"transfer evaluations: {len(prep.transfers)}")
    pairs = list(per_pair.items())
    for (model, attack), n in pairs[: max(show, 0)]:
        a = spec.attack(attack)
        click.echo(f"  {model:<20} {attack:<16} {a.norm:<5} {len(a.epsilons):>3} eps  "
                   f"{done_pair[(model, attack)]:>6}/{n} cells done")
    if len(pairs) > show >= 0:
        click.echo(f"  ... {len(pairs) - show} more model x attack pairs")
    if show > 0:
        click.echo("first cells:")
        for c in cells[:show]:
            state = "done" if c.cell_id in done else "todo"
            click.echo(f"  {c.cell_id}  {state}  {c.model} / {c.attack}  shard {c.shard} "
                       f"[{c.start}:{c.stop}]  seed {c.seed}")
