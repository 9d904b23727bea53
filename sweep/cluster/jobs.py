"""A sweep job on a Ray cluster: submit it, follow its log, say how it ended.

The job's command line (:func:`entrypoint`) is ``sh sweep-job.sh SPEC [--fresh]``:
the launcher :mod:`sweep.cluster.staging` ships (:mod:`sweep.cluster.launcher`)
finds the Python that has attack-sweep on the head and runs ``python -m
sweep.cli.job_entrypoint SPEC`` with it, i.e. ``sweep run SPEC --address auto``, so
a submitted sweep runs exactly the code path a local one does, on the cluster's
Ray. The entrypoint module lives in the CLI (it calls the ``sweep`` command group);
nothing in :mod:`sweep.cluster` imports :mod:`sweep.cli`.

Why an installed module rather than a script shipped with the job: attack-sweep
is installed on every node (``cluster.yaml`` setup commands, the KubeRay image), so
the entrypoint exists there however the client was installed (a wheel has no
``jobs/`` folder). ``jobs/run_sweep.py`` wraps the same function for users who call
``ray job submit`` themselves.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import shlex
import time
from collections.abc import Callable, Mapping
from typing import Any

from sweep.cluster import launcher
from sweep.cluster.client import first_line
from sweep.cluster.staging import Staged, runtime_env
from sweep.errors import SpecError

POLL_SECONDS = 1.0
"""How often ``--wait`` / ``--follow`` ask the job server for status and new log lines."""

METADATA_KEY = "attack_sweep"
"""Job metadata key marking a job as a sweep (``sweep status`` lists only these)."""


def entrypoint(spec_file: str, *, fresh: bool = False) -> str:
    """The shell command Ray runs on the head: the launcher
    :func:`~sweep.cluster.staging.stage` ships (:mod:`sweep.cluster.launcher`) finds the
    Python that has attack-sweep there and runs :mod:`sweep.cli.job_entrypoint` with it."""
    args = ["sh", launcher.FILE_NAME, spec_file]
    if fresh:
        args.append("--fresh")
    return shlex.join(args)


def new_submission_id(name: str) -> str:
    """``sweep-<name>-<UTC time>-<random>``: readable, sortable, never reused (Ray refuses reuse)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "sweep"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"sweep-{slug}-{stamp}-{secrets.token_hex(4)}"


def submit(
    client: Any,
    staged: Staged,
    *,
    fresh: bool = False,
    env_vars: Mapping[str, str] | None = None,
    submission_id: str | None = None,
) -> str:
    """Submit the staged sweep; returns its submission id."""
    from sweep import __version__

    job_id = submission_id or new_submission_id(staged.name)
    try:
        return str(
            client.submit_job(
                entrypoint=entrypoint(staged.spec_file, fresh=fresh),
                submission_id=job_id,
                runtime_env=runtime_env(staged, env_vars),
                metadata={
                    METADATA_KEY: str(__version__),
                    "sweep_name": staged.name,
                    "spec": staged.spec_file,
                    "output": staged.output,
                },
            )
        )
    except RuntimeError as exc:  # Ray's SDK: "Request failed with status code 500: ..."
        raise JobRefused(client.get_address(), exc) from exc
    except OSError as exc:  # requests' errors: the head went away between connect and submit
        raise JobRefused(client.get_address(), exc) from exc


class JobRefused(RuntimeError):
    """The job server answered the submission with an error (e.g. HTTP 500 "No available
    agent to submit job" while the head's agent is still starting): one line, exit 1."""

    def __init__(self, address: str, cause: BaseException) -> None:
        why = " ".join(str(cause).split()).rstrip(".")[:300] or type(cause).__name__
        super().__init__(
            f"the Ray job server at {address} did not take the job: {why}; nothing was "
            "submitted. If the head has just started, try again in a few seconds"
        )




class JobNotFound(SpecError):
    """No job with that submission id on this cluster."""

    def __init__(self, job_id: str) -> None:
        super().__init__("JOB", job_id, "no such job on this cluster; `sweep status` lists them")


class LostContact(RuntimeError):
    """The job server stopped answering while a job was followed; the job may still run."""

    def __init__(self, address: str, job_id: str, cause: BaseException) -> None:
        super().__init__(
            f"lost contact with the Ray job server at {address} ({first_line(cause)}); job "
            f"{job_id} may still be running: once the head is reachable, `sweep logs {job_id} "
            "--follow` picks it up again"
        )


def job_info(client: Any, job_id: str) -> Any:
    """``JobDetails`` of ``job_id``; :class:`JobNotFound` if the cluster has no such job."""
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            raise JobNotFound(job_id) from exc
        raise


def follow(
    client: Any,
    job_id: str,
    echo: Callable[[str], None],
    *,
    timeout: float | None = None,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Any | None:
    """Print the job's log as it grows until it ends; its final ``JobDetails``, or None on timeout.

    Polls (status, then the whole log) every ``poll`` seconds and prints only the
    new part; after the job ends, the log is read once more so its last lines
    are never lost.
    """
    deadline = None if timeout is None else clock() + timeout
    printed = 0
    while True:
        try:
            info = job_info(client, job_id)
            logs = client.get_job_logs(job_id)
        except OSError as exc:  # requests' errors are OSErrors: the tunnel or the head went away
            raise LostContact(client.get_address(), job_id, exc) from exc
        if len(logs) < printed:  # the server restarted its log file: print it whole
            printed = 0
        if len(logs) > printed:
            echo(logs[printed:].rstrip("\n"))
            printed = len(logs)
        if info.status.is_terminal():
            return info
        if deadline is not None and clock() >= deadline:
            return None
        time.sleep(poll)


def exit_code(info: Any) -> int:
    """The CLI exit code a finished job maps to: the driver's own (0, 1, 2) when Ray knows it."""
    if str(info.status) == "SUCCEEDED":
        return 0
    code = getattr(info, "driver_exit_code", None)
    if isinstance(code, int) and code in (1, 2):
        return code
    return 1


def describe(info: Any) -> dict[str, str]:
    """The fields ``sweep status JOB`` prints, as strings."""
    meta = info.metadata or {}

    def when(ms: int | None) -> str:
        if not ms:
            return "-"
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    fields = {
        "job": str(info.submission_id),
        "status": str(info.status),
        "sweep": meta.get("sweep_name", "-"),
        "output": meta.get("output", "-"),
        "started": when(info.start_time),
        "ended": when(info.end_time),
        "entrypoint": str(info.entrypoint),
        "message": (info.message or "").strip() or "-",
    }
    code = getattr(info, "driver_exit_code", None)
    if code is not None:
        fields["exit code"] = str(code)
    return fields


def list_sweep_jobs(client: Any, *, include_all: bool = False) -> list[Any]:
    """This cluster's jobs, oldest first; only sweep jobs unless ``include_all``."""
    jobs = [j for j in client.list_jobs() if j.submission_id]  # drop plain `ray.init` drivers
    if not include_all:
        jobs = [j for j in jobs if METADATA_KEY in (j.metadata or {})]
    return sorted(jobs, key=lambda j: j.start_time or 0)

