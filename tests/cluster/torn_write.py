"""A worker killed in the middle of writing a shard, for real: ``python -m tests.cluster.torn_write``.

Usage: ``python -m tests.cluster.torn_write OUTPUT RELPATH SOURCE``. Writes the rows
of the Parquet file SOURCE as the cell file ``OUTPUT/RELPATH`` through
:func:`sweep.store.write_shard`, the function workers use, except that the bytes
stop halfway: the first half is written and flushed, then the process SIGKILLs
itself, as a lost node or the OOM killer would mid-write. It dies with -9 and
leaves behind exactly what a torn write leaves in the output.

- A local folder: the Parquet writer is swapped for one that writes half the file.
- An object store (OUTPUT a URI): the upload stream is swapped for one that sends
  half the bytes and flushes before the kill, so the upload never completes.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sweep import store

_REAL_WRITE_TABLE = pq.write_table


def torn_write_table(table: pa.Table, where: Any, **kwargs: Any) -> None:
    """Write half of the Parquet bytes of ``table`` to ``where``, then SIGKILL this process."""
    sink = pa.BufferOutputStream()
    _REAL_WRITE_TABLE(table, sink, **kwargs)
    data = sink.getvalue().to_pybytes()
    with open(where, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


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

    def open_output_stream(self, path: str, *args: Any, **kwargs: Any) -> _TornUpload:
        return _TornUpload(self._fs.open_output_stream(path, *args, **kwargs))


def main(argv: list[str]) -> None:
    output, relpath, source = argv
    table = pq.read_table(source)
    loc = store.remote(output)
    if loc is None:
        pq.write_table = torn_write_table  # the module object sweep.store writes through
        store.write_shard(Path(output), relpath, table)
    else:
        fs, base = loc
        store._from_uri = lambda uri: (_TornUploads(fs), base)  # what store.remote resolves
        store.write_shard(output, relpath, table)
    raise SystemExit("write_shard returned: the torn writer was not used")


if __name__ == "__main__":
    main(sys.argv[1:])
