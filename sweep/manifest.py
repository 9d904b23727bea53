"""The manifest: which cells are done, and what the last run planned.

Everything lives under ``<output>/_manifest/`` (a leading ``_`` keeps Parquet
readers out of it, so ``pd.read_parquet(output)`` still works):

- ``done.jsonl``: one line per finished cell, appended by the driver (the only
  writer) after the cell's Parquet file was renamed into place:
  ``{"cell_id", "file", "rows", "bytes", "seconds", "finished"}``. A cell counts as
  done when its line exists *and* its file exists with that size, so a deleted or
  damaged shard is recomputed. A line cut short by a killed driver is skipped;
  the cell is then simply computed again (its file name is fixed, so the rewrite
  replaces it: exactly once by construction).
- ``plan.json``: a :class:`~sweep.results.plan.Plan`: the sweep id, MLflow settings, the
  cell ids per model x attack and the package versions of the latest run, so
  ``sweep sync`` can rebuild MLflow from Parquet alone.
- ``spec.yaml``: the spec text of the latest run.
- ``failures.jsonl``: cells that failed after all retries, with the error.

Both logs are appended one whole record at a time (:func:`append_whole`): a write
that fails part-way (a full disk) is cut back to the previous end of the file, so
a log never ends in a torn line, and the error goes on to the caller.

``<output>/_quarantine/`` receives result-named files the manifest does not vouch
for (e.g. a shard written by a worker whose driver was killed before recording
it, or a file damaged by hand): they are moved, never read, never deleted.

On an object store (``output`` a URI, see :mod:`sweep.store`) nothing can be
appended to, so the done log is a folder of segments instead of one file:
``_manifest/done/<time_ns>-<random>.jsonl``, each written once, in one call, and
never changed. The driver flushes its records as a new segment at once when the
last flush is ``SEGMENT_SECONDS`` old (so a slow sweep writes one object per
cell, as durable as the local log), else after ``SEGMENT_RECORDS`` records or at
:meth:`Manifest.close`: a burst of fast cells costs one upload, and a driver
killed mid-burst loses at most a few seconds of records, whose cells are simply
computed again (their keys are fixed: overwritten, never duplicated). Segments
are read in name (time) order, the last record per cell winning as in the file.
Failures are one object each under ``_manifest/failures/``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.fs as pafs

from sweep import store
from sweep.results.plan import Plan

MANIFEST_DIR = "_manifest"
QUARANTINE_DIR = "_quarantine"
DONE_FILE = "done.jsonl"
PLAN_FILE = "plan.json"
SPEC_FILE = "spec.yaml"
FAILURES_FILE = "failures.jsonl"
DONE_SEGMENTS = "done"  # object stores: _manifest/done/<segment>.jsonl
FAILURE_OBJECTS = "failures"  # object stores: _manifest/failures/<time>-<cell>.json
SEGMENT_SECONDS = 2.0  # flush at once when the last flush is this old
SEGMENT_RECORDS = 100  # else after this many records


@dataclass(frozen=True)
class DoneRecord:
    cell_id: str
    file: str  # relative to the output folder
    rows: int
    bytes: int
    seconds: float = 0.0
    finished: float = 0.0


class Manifest:
    """The done-cell log and plan of one output folder."""

    def __init__(self, output: store.Output) -> None:
        self._remote = store.remote(output)
        self._append: int | None = None  # the done log's file descriptor (O_APPEND)
        self._pending: list[str] = []  # object stores: records not yet in a segment
        self._flushed = float("-inf")  # monotonic time of the last segment written: never
        if self._remote is None:
            self.output: Path | str = store.local_path(output)
            self.dir: Path | str = self.output / MANIFEST_DIR
        else:
            self.output = os.fspath(output)
            self.dir = f"{self._remote[1]}/{MANIFEST_DIR}"  # a path inside the filesystem

    # -- reading -------------------------------------------------------------------------
    def records(self) -> dict[str, DoneRecord]:
        """Every parseable line of the done log (the last line per cell wins)."""
        out: dict[str, DoneRecord] = {}
        for line in self._done_lines():
            try:
                rec = DoneRecord(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line cut short by a killed driver: that cell is redone
            out[rec.cell_id] = rec
        return out

    def _done_lines(self) -> list[str]:
        if self._remote is None:
            path = Path(self.dir) / DONE_FILE
            if not path.exists():
                return []
            return path.read_text(encoding="utf-8").splitlines()
        lines = []
        for name in self._list(DONE_SEGMENTS):
            lines += (self._read(f"{DONE_SEGMENTS}/{name}") or "").splitlines()
        return lines

    def verified(self, cell_ids: Iterable[str] | None = None) -> dict[str, DoneRecord]:
        """Records whose file exists with the recorded size (for ``cell_ids``, or all)."""
        recs = self.records()
        ids = recs.keys() if cell_ids is None else (c for c in cell_ids if c in recs)
        out: dict[str, DoneRecord] = {}
        if self._remote is not None:
            sizes = store.result_sizes(self.output)  # one listing instead of a request per file
            return {cid: recs[cid] for cid in ids if sizes.get(recs[cid].file) == recs[cid].bytes}
        for cid in ids:
            rec = recs[cid]
            try:
                if os.stat(Path(self.output) / rec.file).st_size == rec.bytes:
                    out[cid] = rec
            except OSError:
                pass
        return out

    # -- writing -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every done cell (``--fresh``); their files are overwritten as cells finish."""
        stamp = f"replaced-{int(time.time())}"
        if self._remote is not None:
            for name in self._list(DONE_SEGMENTS):
                store.move(self.output, f"{MANIFEST_DIR}/{DONE_SEGMENTS}/{name}",
                           f"{MANIFEST_DIR}/{DONE_SEGMENTS}.{stamp}/{name}")
            return
        path = Path(self.dir) / DONE_FILE
        if path.exists():
            path.replace(Path(self.dir) / f"{DONE_FILE}.{stamp}")

    def open(self) -> None:
        if self._remote is not None:
            return
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        if self._append is None:
            self._append = _open_append(Path(self.dir) / DONE_FILE)

    def record(self, rec: DoneRecord) -> None:
        """Log one done cell; flushed at once so a killed driver loses at most this line.

        On an object store: at once unless the last segment is younger than
        ``SEGMENT_SECONDS`` (see the module docstring).
        """
        line = json.dumps(asdict(rec), separators=(",", ":"))
        if self._remote is not None:
            self._pending.append(line)
            if (time.monotonic() - self._flushed >= SEGMENT_SECONDS
                    or len(self._pending) >= SEGMENT_RECORDS):
                self._flush_segment()
            return
        if self._append is None:
            self.open()
        assert self._append is not None
        append_whole(self._append, line + "\n")

    def _flush_segment(self) -> None:
        if self._pending:
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
            self._write(f"{DONE_SEGMENTS}/{name}", "\n".join(self._pending) + "\n")
            self._pending = []
        self._flushed = time.monotonic()

    def close(self) -> None:
        if self._remote is not None:
            self._flush_segment()
            return
        if self._append is not None:
            fd, self._append = self._append, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def record_failure(self, cell_id: str, model: str, attack: str, error: str, detail: str) -> None:
        line = {"cell_id": cell_id, "model": model, "attack": attack, "error": error,
                "detail": detail, "time": time.time()}
        if self._remote is not None:
            self._write(f"{FAILURE_OBJECTS}/{time.time_ns():020d}-{cell_id}.json", json.dumps(line))
            return
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        fd = _open_append(Path(self.dir) / FAILURES_FILE)
        try:
            append_whole(fd, json.dumps(line) + "\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def failures_location(self) -> str:
        """Where :meth:`record_failure` writes, as a user would type it."""
        name = FAILURES_FILE if self._remote is None else f"{FAILURE_OBJECTS}/"
        return store.location(self.output, f"{MANIFEST_DIR}/{name}")

    def write_plan(self, plan: Plan, spec_text: str) -> None:
        self._write(PLAN_FILE, plan.to_json())
        self._write(SPEC_FILE, spec_text)

    def read_plan(self) -> Plan | None:
        """The latest run's plan, ``None`` if none was written; a plan of an older
        version reads with defaults (:meth:`Plan.from_json`), raises ``ValueError``
        if the file is not a JSON object."""
        text = self._read(PLAN_FILE)
        return None if text is None else Plan.from_json(text)

    def read_spec_text(self) -> str:
        """The spec text of the latest run ("" if none was recorded)."""
        return self._read(SPEC_FILE) or ""

    def quarantine_unverified(self) -> list[str]:
        """Move result files the manifest does not vouch for into ``_quarantine/``."""
        good = {r.file for r in self.verified().values()}
        moved = []
        for rel in store.result_files(self.output):
            if rel in good:
                continue
            store.move(self.output, rel, f"{QUARANTINE_DIR}/{int(time.time())}/{rel}")
            moved.append(rel)
        return moved

    # -- one file of the manifest folder, local or on an object store --------------------
    def _write(self, name: str, text: str) -> None:
        """Write ``_manifest/<name>`` whole (:func:`sweep.store.write_text`)."""
        store.write_text(self.output, f"{MANIFEST_DIR}/{name}", text)

    def _read(self, name: str) -> str | None:
        return store.read_text(self.output, f"{MANIFEST_DIR}/{name}")

    def _list(self, folder: str) -> list[str]:
        """Names of the files in ``_manifest/<folder>`` (object stores), sorted."""
        assert self._remote is not None
        fs = self._remote[0]
        selector = pafs.FileSelector(f"{self.dir}/{folder}", allow_not_found=True)
        return sorted(i.base_name for i in fs.get_file_info(selector)
                      if i.type == pafs.FileType.File and not i.base_name.startswith("."))



# -- whole-record appends ------------------------------------------------------------------


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def append_whole(fd: int, text: str) -> None:
    """Append ``text`` to the file open as ``fd`` (``O_APPEND``), all of it or none of it.

    ``os.write`` may write part of the data and then fail (ENOSPC on a full disk, EDQUOT
    over quota, EIO); the file is then truncated back to where it ended, so readers never
    meet a torn record, and the error is raised. Truncating needs no free space.
    """
    data = text.encode("utf-8")
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.ftruncate(fd, start)
        raise
