"""One ``sweep run`` per output at a time: a lease file that names its holder.

Two runs on one output would both compute every cell and both append to the done
log. So :func:`hold_output` takes ``<output>/_manifest/lease`` before anything in
the output is touched (temp files removed, orphans adopted or quarantined) and
keeps it until the run ends. A second run is refused at once, before any work,
with one line saying who holds the lease: host, PID, command and start time.

The lease is an advisory ``flock`` on that file; the file's content (JSON) only
names the holder. The kernel releases a ``flock`` when its holder exits however
it exits (SIGKILL included), so there is no stale lease to detect: no PID
guessing, no race between two runs that each find a dead holder and each take
over. A holder's details left in the file by a killed run are overwritten by the
next holder. On a shared file system the lock is the file system's (NFSv4 and
Amazon EFS support it; Linux maps ``flock`` to NFS byte-range locks).

Object stores have neither locks nor, through pyarrow, conditional writes, so an
object-store output has no lease: :func:`hold_output` says so and goes on. Two runs
on one prefix then waste work but corrupt nothing (every cell's object has a fixed
key and is uploaded whole; done segments are write-once). Don't start two.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator

from sweep.errors import SpecError
from sweep.results import store

LEASE_FILE = "_manifest/lease"


@contextlib.contextmanager
def hold_output(output: store.Output, echo: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the output's lease while the block runs; a :class:`SpecError` if another run has it."""
    if not store.is_local(output):  # the lease is an flock: local files only
        echo(f"note: no lease on an object store: make sure no other run writes {output} now")
        yield
        return
    path = store.local_path(output) / LEASE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by Ray's processes
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise SpecError(
                "output", str(output),
                f"is in use by another sweep run ({describe(_read(fd))}); wait for it to end "
                f"or stop it, or give another output (lease: {path})",
            ) from exc  # fmt: skip
        _write(fd, holder())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # nobody holds it now; the flock goes with the close below
    finally:
        os.close(fd)


def holder() -> dict[str, object]:
    """What the lease file says about this process."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def describe(info: dict[str, object] | None) -> str:
    """``pid 123 on host h, `sweep run spec.yaml`, since 2026-...`` (or that it is starting)."""
    if not info:
        return "it is starting: its details are not written yet"
    return (f"pid {info.get('pid')} on host {info.get('host')}, `{info.get('command')}`, "
            f"since {info.get('started')}")


def _write(fd: int, info: dict[str, object]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    os.fsync(fd)


def _read(fd: int) -> dict[str, object] | None:
    try:
        data = os.pread(fd, 4096, 0)
        info = json.loads(data) if data else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
