"""``sweep validate SPEC``: check a spec completely (data loaded, every model probed); run nothing."""

from __future__ import annotations

import click

from sweep.cli.exit_codes import spec_errors_exit_2


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
def validate(spec_path: str) -> None:
    """Validate SPEC: keys, types, names, epsilons, data, and one forward pass per model.

    Exit code 0 if the spec is valid, 2 (with one message naming the key and the
    value) if not. Nothing is written and Ray is not started.
    """
    from sweep.pipeline import prepare

    with spec_errors_exit_2():
        prep = prepare(spec_path)
    spec = prep.spec
    norms = sorted({a.norm for a in spec.attacks})
    click.echo(
        f"{spec_path}: valid. {len(spec.models)} model(s) x {len(spec.attacks)} attack(s) x "
        f"{prep.layout.num_shards} shard(s) of {spec.dataset.name} "
        f"({prep.layout.num_samples} samples) = {len(prep.cells)} cells; norms: {', '.join(norms)}; "
        f"sweep id {prep.sweep_id}"
    )
    from sweep.pipeline import model_check_lines

    for line in model_check_lines(prep):
        click.echo(line, err=True)
