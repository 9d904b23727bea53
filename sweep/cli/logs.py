"""``sweep logs JOB --address URL [--follow]``: a sweep job's driver log."""

from __future__ import annotations

import click

from sweep.cli.exit_codes import EXIT_FAILED, spec_errors_exit_2
from sweep.cli.options import address_option, address_source


@click.command()
@click.argument("job_id", metavar="JOB")
@address_option
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new lines until the job ends; exit with its result (0, 1, 2).")
def logs(job_id: str, address: str | None, follow: bool) -> None:
    """Print JOB's log (the sweep driver's output on the head)."""
    from sweep.cluster import jobs
    from sweep.cluster.client import connect

    with spec_errors_exit_2():
        client = connect(address, warn=lambda m: click.echo(m, err=True), source=address_source())
        if not follow:
            jobs.job_info(client, job_id)  # an unknown job is exit 2, not an empty log
            click.echo(client.get_job_logs(job_id), nl=False)
            return
        try:
            info = jobs.follow(client, job_id, click.echo)
        except jobs.LostContact as exc:
            click.echo(f"error: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_FAILED) from exc
    click.echo(f"job {job_id} {info.status}", err=True)
    raise click.exceptions.Exit(jobs.exit_code(info))
