"""The entrypoint of a sweep job on the head: ``python -m sweep.cli.job_entrypoint SPEC``.

The launcher ``sweep submit`` ships (:mod:`sweep.cluster.launcher`) runs this module
with the Python that has attack-sweep on the head; it runs ``sweep run SPEC
--address auto``. It lives in the CLI because it calls the ``sweep`` command group:
:mod:`sweep.cluster` never imports :mod:`sweep.cli`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence

from sweep.cli.main import cli


def job_main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint of a sweep job on the head: ``sweep run SPEC --address auto``.

    Prints where it runs first (host, versions, the cluster's CPUs and GPUs), so
    the job log says what ran where; returns ``sweep run``'s exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m sweep.cli.job_entrypoint",
        description="Run a sweep inside a Ray job (joins the job's cluster: --address auto).",
    )
    parser.add_argument("spec", help="the spec file, relative to the job's working_dir")
    parser.add_argument("--fresh", action="store_true", help="recompute every cell")
    args = parser.parse_args(argv)

    import ray

    from sweep import __version__

    print(
        f"attack-sweep {__version__} (ray {ray.__version__}, python {sys.version.split()[0]} "
        f"at {sys.executable}) on {socket.gethostname()}, working dir {os.getcwd()}",
        flush=True,
    )
    # no terminal here: the progress line is plain text every 10 s and when the worker
    # pool changes (what it waits for, workers placed, nodes), which `sweep logs` shows
    command = ["run", args.spec, "--address", "auto"]
    if args.fresh:
        command.append("--fresh")
    try:
        cli.main(command, prog_name="sweep", standalone_mode=True)
    except SystemExit as exc:  # click always ends with SystemExit in standalone mode
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(job_main())
