"""A worker killed in the middle of writing a shard, for real: ``python -m tests.cluster.torn_write``.

Usage: ``python -m tests.cluster.torn_write OUTPUT RELPATH SOURCE``. Writes the rows
of the Parquet file SOURCE as the cell file ``OUTPUT/RELPATH`` through
:func:`sweep.results.store.write_shard`, the function workers use (for a RELPATH under
``_adversarials/``: :func:`sweep.results.adversarials.write_adversarials`), except that the bytes
stop halfway: the first half is written and flushed, then the process SIGKILLs
itself, as a lost node or the OOM killer would mid-write. It dies with -9 and
leaves behind exactly what a torn write leaves in the output.

- A local folder: :mod:`sweep.results.atomic`'s ``os.write`` is swapped for one that
  writes half the bytes to the temp file and fsyncs them before the kill.
- An object store (OUTPUT a URI): the upload stream is swapped for one that sends
  half the bytes and flushes before the kill, so the upload never completes.
"""

from __future__ import annotations

import os
import signal
import sys
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq

from sweep.results import adversarials as advfiles
from sweep.results import atomic, store


def torn_os_write(fd: int, data: Any) -> int:
    """Write half of ``data`` to ``fd``, fsync it, then SIGKILL this process."""
    view = memoryview(data)
    os.write(fd, view[: len(view) // 2])
    os.fsync(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


class _TornUpload:
    """An upload stream that sends half of what it is given, flushes, then SIGKILLs."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __enter__(self) -> _TornUpload:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()  # never reached: the process is gone by then

    def write(self, data: Any) -> None:
        view = memoryview(data)
        self._stream.write(view[: len(view) // 2])
        self._stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class _TornUploads:
    """The output's filesystem, with torn upload streams."""

    def __init__(self, fs: Any) -> None:
        self._fs = fs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def open_output_stream(self, path: str, *args: Any, **kwargs: Any) -> _TornUpload:
        return _TornUpload(self._fs.open_output_stream(path, *args, **kwargs))


def tear(output: Any, relpath: str, source: Any) -> list[Any]:
    """Move ``output/relpath`` to ``source`` and rewrite it in a subprocess killed halfway
    (this module's ``main``); asserts it died so and left one half temp file, no final
    file. Returns the temp files left (local outputs)."""
    import shutil
    import subprocess
    from pathlib import Path

    from sweep.results import store as results_store

    final = Path(output) / relpath
    shutil.move(final, source)
    writer = subprocess.run(
        [sys.executable, "-m", "tests.cluster.torn_write", str(output), relpath, str(source)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
    )
    assert writer.returncode == -signal.SIGKILL, writer.stderr
    torn = list(final.parent.glob(f"{results_store.TMP_PREFIX}*"))
    assert len(torn) == 1 and 0 < torn[0].stat().st_size < Path(source).stat().st_size
    assert not final.exists()
    return torn


def main(argv: list[str]) -> None:
    output, relpath, source = argv
    table = pq.read_table(source)
    fs, base = store.filesystem(output)
    if atomic.is_local(fs):
        atomic.os = SimpleNamespace(**{**vars(os), "write": torn_os_write})  # what atomic.write calls
    else:
        store.filesystem = lambda _output: (_TornUploads(fs), base)  # what sweep.results.store writes through
    if relpath.startswith(f"{advfiles.ADV_DIR}/"):
        advfiles.write_adversarials(output, relpath, table)
    else:
        store.write_shard(output, relpath, table)
    raise SystemExit("the write returned: the torn writer was not used")


if __name__ == "__main__":
    main(sys.argv[1:])
