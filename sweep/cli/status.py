"""``sweep status [JOB] --address URL``: one sweep job's state, or the list of them, with
the cluster's nodes and the sweep workers placed on them or waiting for one."""

from __future__ import annotations

import click

from sweep.cli.exit_codes import spec_errors_exit_2
from sweep.cli.options import address_option, address_source


@click.command()
@click.argument("job_id", metavar="[JOB]", required=False)
@address_option
@click.option("--all", "include_all", is_flag=True, help="List every Ray job, not only sweeps.")
def status(job_id: str | None, address: str | None, include_all: bool) -> None:
    """Show JOB's status, or list the cluster's sweep jobs (oldest first), with the
    cluster's live nodes and the sweep workers placed on them or waiting for a node.

    Exit code 0 when the cluster answered (whatever the job's state), 2 for an
    unknown JOB or a bad address.
    """
    from sweep.cluster import jobs
    from sweep.cluster.client import connect

    with spec_errors_exit_2():
        client = connect(address, warn=lambda m: click.echo(m, err=True), source=address_source())
        if job_id is not None:
            info = jobs.job_info(client, job_id)
            fields = jobs.describe(info)
            fields.update(_pool(client, getattr(info, "job_id", None) or "-"))
            width = max(map(len, fields))
            for key, value in fields.items():
                click.echo(f"{key + ':':<{width + 1}} {value}")
            return
        listed = jobs.list_sweep_jobs(client, include_all=include_all)
    pool = _pool(client, None)
    cluster = f"cluster: nodes {pool['nodes']}; sweep workers {pool['workers']}"
    if not listed:
        click.echo("no sweep jobs on this cluster" + ("" if include_all else " (--all lists every job)"))
        click.echo(cluster)
        return
    rows = [jobs.describe(j) for j in listed]
    columns = ("job", "status", "sweep", "started", "output")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        click.echo("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
    click.echo(cluster)


def _pool(client: object, job_id: str | None) -> dict[str, str]:
    """Nodes and workers (:mod:`sweep.cluster.status`); a cluster whose state API does not
    answer still gets its job status, with the reason in place of the counts."""
    from sweep.cluster import status as cluster_status
    from sweep.cluster.client import auth_headers

    try:
        view = cluster_status.read(client.get_address(), auth_headers(), job_id)  # type: ignore[attr-defined]
    except Exception as exc:  # the state API is optional here: never fail `status` for it
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        reason = f"unavailable (Ray's state API: {detail})"
        return {"nodes": reason, "workers": reason}
    return view.lines()
