"""``sweep submit SPEC --address URL``: run a sweep on a Ray cluster as a Ray job.

The spec and the local files it names are shipped as the job's working_dir
(:mod:`sweep.cluster.staging`); the job runs ``sweep run SPEC --address auto`` on
the head (:mod:`sweep.cli.job_entrypoint`). Results go where the spec's ``output`` says, which on a cluster must be an
absolute path on storage every node mounts.
"""

from __future__ import annotations

import click

from sweep.cli.exit_codes import EXIT_FAILED, spec_errors_exit_2
from sweep.cli.options import address_option, address_source


@click.command()
@click.argument("spec_path", metavar="SPEC")
@address_option
@click.option("--wait", is_flag=True, help="Stream the job's log until it ends; exit with its result.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="S",
              help="Stop waiting after S seconds (implies --wait; the job keeps running).")
@click.option("--fresh", is_flag=True, help="Recompute every cell, even those already done.")
@click.option("--include", multiple=True, metavar="PATH",
              help="Also ship this file or folder (relative to here); repeatable.")
@click.option("--env", "env_items", multiple=True, metavar="KEY[=VALUE]",
              help="Environment variable for the job (KEY alone: its value here); repeatable.")
@click.option("--no-check", is_flag=True,
              help="Do not validate the spec here first (for checkpoints only the cluster has).")
@click.option("--dry-run", is_flag=True, help="Stage, check and print what would be shipped; submit nothing.")
def submit(spec_path: str, address: str | None, wait: bool, timeout: float | None, fresh: bool,
           include: tuple[str, ...], env_items: tuple[str, ...], no_check: bool, dry_run: bool) -> None:
    """Submit the sweep SPEC to the Ray cluster at --address.

    Prints the job id at once. With --wait (or --timeout) it follows the job's
    log and exits like `sweep run` would: 0 done, 1 failed (or still running at
    the timeout), 2 bad input. Without it, follow up with `sweep status JOB` and
    `sweep logs JOB`.
    """
    from sweep.cluster import client as cluster_client
    from sweep.cluster import jobs, staging

    wait = wait or timeout is not None
    with spec_errors_exit_2():
        env_vars = staging.parse_env_vars(env_items)
        with staging.staging_dir() as folder:
            staged = staging.stage(spec_path, folder, include=include)
            for line in staged.shipped:
                click.echo(f"shipping {line}")
            for line in staged.on_cluster:
                click.echo(f"expected on the cluster: {line}")
            if not no_check:
                staging.check_spec(staged)
            if dry_run:
                click.echo(f"would submit {staged.spec_file} ({staged.size_bytes / 2**10:.0f} KiB) "
                           f"running: {jobs.entrypoint(staged.spec_file, fresh=fresh)}")
                click.echo(f"results would go to: {staged.output}")
                return
            client = cluster_client.connect(address, warn=lambda m: click.echo(m, err=True),
                                            source=address_source())
            try:
                job_id = jobs.submit(client, staged, fresh=fresh, env_vars=env_vars)
            except jobs.JobRefused as exc:
                click.echo(f"error: {exc}", err=True)
                raise click.exceptions.Exit(EXIT_FAILED) from exc
    click.echo(f"submitted {job_id} to {client.get_address()}")
    click.echo(f"results: {staged.output}")
    if not wait:
        click.echo(f"follow:  sweep logs {job_id} --follow    status: sweep status {job_id}")
        return
    try:
        with spec_errors_exit_2():
            info = jobs.follow(client, job_id, click.echo, timeout=timeout)
    except jobs.LostContact as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from exc
    if info is None:
        click.echo(f"timed out after {timeout:g}s; job {job_id} is still running "
                   f"(sweep logs {job_id} --follow; stop it with `ray job stop {job_id}`)", err=True)
        raise click.exceptions.Exit(EXIT_FAILED)
    click.echo(f"job {job_id} {info.status}" + (f": {info.message}" if info.message else ""),
               err=str(info.status) != "SUCCEEDED")
    raise click.exceptions.Exit(jobs.exit_code(info))
