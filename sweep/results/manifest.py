"""The manifest: which cells are done, and what the last run planned.

Everything lives under ``<output>/_manifest/`` (a leading ``_`` keeps Parquet
readers out of it, so ``pd.read_parquet(output)`` still works):

- ``done/``: one record per finished cell, written by the driver (the only
  writer) after the cell's Parquet file is in place:
  ``{"cell_id", "file", "rows", "bytes", "seconds", "finished", "adv_file",
  "adv_bytes", "adversarials"}``, in write-once segments (below). A cell counts as
  done when its record exists *and* its file exists with that size, so a deleted or
  damaged shard is recomputed; when the spec keeps adversarial images, also its
  adversarial file (:mod:`sweep.results.adversarials`) with ``adv_bytes``, stored
  under a setting that covers the spec's (:meth:`Manifest.complete`). Transfer
  evaluations are recorded alike, under their own ids (their rows in ``_transfer/``).
- ``plan.json``: a :class:`~sweep.results.plan.Plan`: the sweep id, MLflow settings, the
  cell ids per model x attack and the package versions of the latest run, so
  ``sweep sync`` can rebuild MLflow from Parquet alone.
- ``spec.yaml``: the spec text of the latest run.
- ``failures/``: cells that failed after all retries, with the error, one file each.

Every file here is written once, whole (:func:`sweep.results.store.write_text`, i.e.
:mod:`sweep.results.atomic`), and never appended to or changed, on the local disk
and on an object store alike (an object store cannot append): so no reader meets a
torn record, and a write that fails part-way (a full disk) leaves nothing behind.

``<output>/_quarantine/`` receives result-named files the manifest does not vouch
for (e.g. a shard written by a worker whose driver was killed before recording
it, or a file damaged by hand): they are moved, never read, never deleted.

The done log is a folder of segments, ``_manifest/done/<time_ns>-<random>.jsonl``,
each written once. The driver flushes its records as a new segment at once when
the last flush is ``SEGMENT_SECONDS`` old (so a slow sweep writes one segment per
cell), else after ``SEGMENT_RECORDS`` records, when ``SEGMENT_SECONDS`` have
passed (:meth:`Manifest.flush_due`), or at :meth:`Manifest.close`: a
burst of fast cells costs one write, and a driver killed mid-burst loses at most a
few seconds of records, whose files the next run adopts (:mod:`sweep.execution.adoption`) or
recomputes (their names are fixed: overwritten, never duplicated). Segments are
read in name (time) order, the last record per cell winning. A ``done.jsonl``
appended by earlier versions is still read, before the segments. Failures are one
file each under ``_manifest/failures/``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sweep.results import store
from sweep.results.adversarials import ADV_DIR, TRANSFER_DIR
from sweep.results.plan import Plan

MANIFEST_DIR = "_manifest"
QUARANTINE_DIR = "_quarantine"
LEGACY_DONE_FILE = "done.jsonl"  # appended in place by earlier versions: read, never written
PLAN_FILE = "plan.json"
SPEC_FILE = "spec.yaml"
DONE_SEGMENTS = "done"  # _manifest/done/<segment>.jsonl
FAILURES = "failures"  # _manifest/failures/<time>-<cell>.json
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
    # the cell's adversarial file (sweep.results.adversarials), None when it stored none;
    # what it stored under (``none``, ``all``, ``first_n:<n>``); records of earlier
    # versions read as having stored none
    adv_file: str | None = None
    adv_bytes: int = 0
    adversarials: str = "none"

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], finished: float) -> DoneRecord:
        """The record of a worker's summary of a finished cell (or transfer unit)."""
        return cls(
            cell_id=summary["cell_id"], file=summary["file"], rows=summary["rows"],
            bytes=summary["bytes"], seconds=round(summary["seconds"], 4), finished=finished,
            adv_file=summary.get("adv_file"), adv_bytes=summary.get("adv_bytes", 0),
            adversarials=summary.get("adversarials", "none"),
        )  # fmt: skip


class Manifest:
    """The done-cell log and plan of one output folder (a path or an object-store URI)."""

    def __init__(self, output: store.Output) -> None:
        self.output = output
        self._pending: list[str] = []  # records not yet in a segment
        self._flushed = float("-inf")  # monotonic time of the last segment written: never

    # -- reading -------------------------------------------------------------------------
    def records(self) -> dict[str, DoneRecord]:
        """Every parseable record of the done log (the last one per cell wins)."""
        out: dict[str, DoneRecord] = {}
        for line in self._done_lines():
            try:
                rec = DoneRecord(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line cut short in a legacy log: that cell is redone
            out[rec.cell_id] = rec
        return out

    def _done_lines(self) -> list[str]:
        lines = (self._read(LEGACY_DONE_FILE) or "").splitlines()
        for name in self._list(DONE_SEGMENTS):
            lines += (self._read(f"{DONE_SEGMENTS}/{name}") or "").splitlines()
        return lines

    def verified(self, cell_ids: Iterable[str] | None = None) -> dict[str, DoneRecord]:
        """Records whose file exists with the recorded size (for ``cell_ids``, or all)."""
        recs = self.records()
        ids = recs.keys() if cell_ids is None else (c for c in cell_ids if c in recs)
        sizes = store.result_sizes(self.output)  # one listing instead of a request per file
        if any(r.file.startswith(f"{TRANSFER_DIR}/") for r in recs.values()):
            sizes.update(store.result_sizes(self.output, TRANSFER_DIR))
        return {cid: recs[cid] for cid in ids if sizes.get(recs[cid].file) == recs[cid].bytes}

    def complete(
        self, cell_ids: Iterable[str], covers: Callable[[str, DoneRecord], bool]
    ) -> dict[str, DoneRecord]:
        """:meth:`verified` records whose adversarials are what the spec asks for:
        ``covers(cell_id, record)`` says whether what the cell stored covers the
        spec's setting, and a stored adversarial file must exist with ``adv_bytes``."""
        recs = self.verified(cell_ids)
        wanted = {cid: r for cid, r in recs.items() if covers(cid, r)}
        if not any(r.adv_file for r in wanted.values()):
            return wanted
        sizes = store.result_sizes(self.output, ADV_DIR)
        return {cid: r for cid, r in wanted.items()
                if r.adv_file is None or sizes.get(r.adv_file) == r.adv_bytes}

    def failures(self) -> list[dict[str, Any]]:
        """The recorded failures, oldest first."""
        return [json.loads(self._read(f"{FAILURES}/{name}") or "{}") for name in self._list(FAILURES)]

    # -- writing -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every done cell (``--fresh``); their files are overwritten as cells finish."""
        stamp = f"replaced-{int(time.time())}"
        if self._read(LEGACY_DONE_FILE) is not None:
            self._move(LEGACY_DONE_FILE, f"{LEGACY_DONE_FILE}.{stamp}")
        for name in self._list(DONE_SEGMENTS):
            self._move(f"{DONE_SEGMENTS}/{name}", f"{DONE_SEGMENTS}.{stamp}/{name}")

    def record(self, rec: DoneRecord) -> None:
        """Log one done cell: at once unless the last segment is younger than
        ``SEGMENT_SECONDS`` (see the module docstring)."""
        self._pending.append(json.dumps(asdict(rec), separators=(",", ":")))
        if len(self._pending) >= SEGMENT_RECORDS:
            self._flush_segment()
        else:
            self.flush_due()

    def flush_due(self) -> None:
        """Write the pending records if the last segment is ``SEGMENT_SECONDS`` old: called
        after each record, and by the dispatcher while it waits, so no record waits longer."""
        if self._pending and time.monotonic() - self._flushed >= SEGMENT_SECONDS:
            self._flush_segment()

    def _flush_segment(self) -> None:
        # a segment that cannot be written (a full disk) is dropped, not retried: its
        # cells' files are whole, and the next run adopts them (sweep.execution.adoption)
        pending, self._pending = self._pending, []
        self._flushed = time.monotonic()
        if pending:
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
            self._write(f"{DONE_SEGMENTS}/{name}", "\n".join(pending) + "\n")

    def close(self) -> None:
        """Write the records not yet in a segment."""
        self._flush_segment()

    def record_failure(self, cell_id: str, model: str, attack: str, error: str, detail: str) -> None:
        line = {"cell_id": cell_id, "model": model, "attack": attack, "error": error,
                "detail": detail, "time": time.time()}
        self._write(f"{FAILURES}/{time.time_ns():020d}-{cell_id}.json", json.dumps(line))

    def failures_location(self) -> str:
        """Where :meth:`record_failure` writes, as a user would type it."""
        return store.location(self.output, f"{MANIFEST_DIR}/{FAILURES}/")

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

    # -- one file of the manifest folder ----------------------------------------------------
    def _write(self, name: str, text: str) -> None:
        """Write ``_manifest/<name>`` whole (:func:`sweep.results.store.write_text`)."""
        store.write_text(self.output, f"{MANIFEST_DIR}/{name}", text)

    def _read(self, name: str) -> str | None:
        return store.read_text(self.output, f"{MANIFEST_DIR}/{name}")

    def _move(self, src: str, dest: str) -> None:
        store.move(self.output, f"{MANIFEST_DIR}/{src}", f"{MANIFEST_DIR}/{dest}")

    def _list(self, folder: str) -> list[str]:
        """Names of the files in ``_manifest/<folder>``, sorted."""
        return store.list_files(self.output, f"{MANIFEST_DIR}/{folder}")
