"""``sweep logs JOB --address URL [--follow]``: a sweep job's driver log."""

from __future__ import annotations

import click

from sweep.cli.exit_codes import EXIT_FAILED, spec_errors_exit_2
from sweep.cli.submit import ADDRESS_HELP


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--address", envvar="RAY_API_SERVER_ADDRESS", show_envvar=True, help=ADDRESS_HELP)
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new lines until the job ends; exit with its result (0, 1, 2).")
def logs(job_id: str, address: str | None, follow: bool) -> None:
    """Print JOB's log (the sweep driver's output on the head)."""
    from sweep import submission

    with spec_errors_exit_2():
        client = submission.connect(address, warn=lambda m: click.echo(m, err=True))
        if not follow:
            submission.job_info(client, job_id)  # an unknown job is exit 2, not an empty log
            click.echo(client.get_job_logs(job_id), nl=False)
            return
        try:
            info = submission.follow(client, job_id, click.echo)
        except submission.LostContact as exc:
            click.echo(f"error: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_FAILED) from exc
    click.echo(f"job {job_id} {info.status}", err=True)
    raise click.exceptions.Exit(submission.exit_code(info))
