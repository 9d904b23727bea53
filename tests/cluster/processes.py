"""What a killed ``sweep run`` leaves running, read from ``/proc`` (Linux).

SIGKILL to the driver's process group does not reach everything it started: Ray
puts each worker process in a process group of its own (same session, though),
so worker actors outlive the driver, its GCS and its raylet for a moment and can
even finish the cell they were computing. These helpers find such processes by
session id or by the run's private Ray temp folder in their command line, so a
test can wait for them to go (Ray workers exit once their raylet is gone) and kill
by pid, never by name, whatever is still there after a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, session id)`` of a process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[3])  # state, then ppid, pgrp, session


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def leftovers(session: int, marker: str) -> list[int]:
    """Live (not zombie) processes in ``session`` or whose command line holds ``marker``.

    Both, because Ray renames its worker processes (``ray::RayCellWorker``: the
    folder is gone from their command line) and a process may start a new session.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X") or pid == os.getpid():
            continue
        if stat[1] == session or marker in _cmdline(pid):
            found.append(pid)
    return found


def wait_gone(session: int, marker: str, timeout: float) -> tuple[float, list[int]]:
    """Seconds until no leftover is alive, and those still alive at ``timeout`` (empty if none)."""
    t0 = time.monotonic()
    while True:
        alive = leftovers(session, marker)
        if not alive or time.monotonic() - t0 > timeout:
            return time.monotonic() - t0, alive
        time.sleep(0.2)


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
