"""``sweep validate SPEC``: check a spec completely (data loaded, every model probed); run nothing."""

from __future__ import annotations

import click

from sweep.cli.exit_codes import spec_errors_exit_2


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--no-code", is_flag=True,
              help="Run no code the spec names: do not import or call factories, do not "
                   "unpickle trusted checkpoints (those entries are listed as not probed).")
def validate(spec_path: str, no_code: bool) -> None:
    """Validate SPEC: keys, types, names, epsilons, data, and one forward pass per model.

    Exit code 0 if the spec is valid, 2 (with one message naming the key and the
    value) if not. Ray is not started and attack-sweep writes nothing. A spec that
    names a `factory: "module:function"` is code: validating it imports that module
    and calls the function (to probe the model), and that code may do anything, as a
    script would. With --no-code such entries are checked for shape only.
    """
    if no_code:
        _validate_without_code(spec_path)
        return
    from sweep.execution.pipeline import prepare

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
    from sweep.execution.pipeline import model_check_lines

    for line in model_check_lines(prep):
        click.echo(line, err=True)


def _validate_without_code(spec_path: str) -> None:
    from sweep.spec.config import load_spec
    from sweep.spec.grid import expand
    from sweep.spec.inputs import check_inputs_without_code

    with spec_errors_exit_2():
        spec = load_spec(spec_path)
        layout, skipped = check_inputs_without_code(spec)
    cells = "" if layout is None else f" = {len(expand(spec, layout))} cells"
    click.echo(f"{spec_path}: valid as far as checked without running its code. "
               f"{len(spec.models)} model(s) x {len(spec.attacks)} attack(s){cells}")
    for entry in skipped:
        click.echo(f"  not probed (runs code): {entry}")
