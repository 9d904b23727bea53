"""The shell launcher a submitted sweep job starts with: find the Python that has attack-sweep.

Ray runs a job's entrypoint in a shell on the head with the head's ``PATH``, so a
bare ``python`` there is whatever that ``PATH`` finds, not necessarily the
interpreter Ray itself runs on: a head started with a virtualenv's ``ray start``
without activating the virtualenv ran the job's ``python -m ...`` on the system
Python and failed with ``No module named 'sweep'``.

:func:`write` puts :data:`SCRIPT` into the job's working_dir and the entrypoint
becomes ``sh sweep-job.sh SPEC [--fresh]``. The script picks, first found:

1. ``$SWEEP_PYTHON`` (``sweep submit --env SWEEP_PYTHON=/path/to/python``);
2. the interpreter Ray starts its workers with on the head: the ``--python_worker_command``
   of the raylet, read from ``/proc`` up the launcher's ancestors (Ray's ``sh -c``,
   then its job supervisor, a worker process whose parent is the raylet); this is
   the Python that ran ``ray start``;
3. ``python3``, then ``python`` on ``PATH``.

It then checks that this Python imports ``sweep`` and ``torch``; if not, it prints
one line saying which Python lacks what and how to fix it, and exits 2 (bad
setup, reported like bad input: nothing was run or written).
"""

from __future__ import annotations

from pathlib import Path

FILE_NAME = "sweep-job.sh"
PYTHON_VAR = "SWEEP_PYTHON"

SCRIPT = r"""#!/bin/sh
# Written by `sweep submit` (sweep/cluster/launcher.py): runs the sweep with the Python that
# has attack-sweep on this head, or says in one line what is missing and how to fix it.
set -u

ray_python() {
    # Up the process tree (this shell, maybe Ray's `sh -c`, Ray's job supervisor) to
    # the raylet, whose --python_worker_command starts with the Python of `ray start`.
    pid=$PPID
    for _ in 1 2 3 4 5 6; do
        [ -r "/proc/$pid/cmdline" ] || return 0
        worker=$(tr '\0' '\n' < "/proc/$pid/cmdline" \
            | sed -n 's/^--python_worker_command=\([^ ]*\).*/\1/p' | head -n 1)
        if [ -n "$worker" ]; then
            echo "$worker"
            return 0
        fi
        pid=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f2)
        [ "$pid" -gt 1 ] 2>/dev/null || return 0
    done
}

if [ -n "${SWEEP_PYTHON:-}" ]; then
    PY=$SWEEP_PYTHON
else
    PY=$(ray_python)
    [ -n "$PY" ] && [ -x "$PY" ] || PY=$(command -v python3 || command -v python || echo python)
fi

if ! problem=$("$PY" -c 'import sweep, torch' 2>&1); then
    problem=$(printf '%s\n' "$problem" | tail -n 1)
    echo "error: the cluster's Python ($PY) cannot run the sweep: ${problem:-not runnable};" \
        "install attack-sweep and torch on every node (cluster.yaml's setup_commands," \
        "or the image of deploy/kuberay-raycluster.yaml), or name a Python that has them:" \
        "sweep submit --env SWEEP_PYTHON=/path/to/python ..." >&2
    exit 2
fi
exec "$PY" -m sweep.cli.job_entrypoint "$@"
"""


def write(folder: Path) -> str:
    """Write the launcher into a job's working_dir; returns its name there."""
    path = folder / FILE_NAME
    path.write_text(SCRIPT, encoding="utf-8")
    path.chmod(0o755)
    return FILE_NAME
