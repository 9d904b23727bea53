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
- ``plan.json``: the sweep id, MLflow settings and the cell ids per model x attack
  of the latest run, so ``sweep sync`` can rebuild MLflow from Parquet alone.
- ``spec.yaml``: the spec text of the latest run.
- ``failures.jsonl``: cells that failed after all retries, with the error.

``<output>/_quarantine/`` receives result-named files the manifest does not vouch
for (e.g. a shard written by a worker whose driver was killed before recording
it, or a file damaged by hand): they are moved, never read, never deleted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from sweep import store

MANIFEST_DIR = "_manifest"
QUARANTINE_DIR = "_quarantine"
DONE_FILE = "done.jsonl"
PLAN_FILE = "plan.json"
SPEC_FILE = "spec.yaml"
FAILURES_FILE = "failures.jsonl"


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

    def __init__(self, output: Path) -> None:
        self.output = Path(output)
        self.dir = self.output / MANIFEST_DIR
        self._append: IO[str] | None = None

    # -- reading -------------------------------------------------------------------------
    def records(self) -> dict[str, DoneRecord]:
        """Every parseable line of ``done.jsonl`` (the last line per cell wins)."""
        path = self.dir / DONE_FILE
        out: dict[str, DoneRecord] = {}
        if not path.exists():
            return out
        with path.open("r", encoding="utf-8") as f:
            for line in f:
                try:
                    rec = DoneRecord(**json.loads(line))
                except (ValueError, TypeError):
                    continue  # a line cut short by a killed driver: that cell is redone
                out[rec.cell_id] = rec
        return out

    def verified(self, cell_ids: Iterable[str] | None = None) -> dict[str, DoneRecord]:
        """Records whose file exists with the recorded size (for ``cell_ids``, or all)."""
        recs = self.records()
        ids = recs.keys() if cell_ids is None else (c for c in cell_ids if c in recs)
        out: dict[str, DoneRecord] = {}
        for cid in ids:
            rec = recs[cid]
            try:
                if os.stat(self.output / rec.file).st_size == rec.bytes:
                    out[cid] = rec
            except OSError:
                pass
        return out

    # -- writing -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every done cell (``--fresh``); their files are overwritten as cells finish."""
        path = self.dir / DONE_FILE
        if path.exists():
            path.replace(self.dir / f"{DONE_FILE}.replaced-{int(time.time())}")

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._append is None:
            self._append = (self.dir / DONE_FILE).open("a", encoding="utf-8")

    def record(self, rec: DoneRecord) -> None:
        """Append one done cell; flushed at once so a killed driver loses at most this line."""
        if self._append is None:
            self.open()
        assert self._append is not None
        self._append.write(json.dumps(asdict(rec), separators=(",", ":")) + "\n")
        self._append.flush()

    def close(self) -> None:
        if self._append is not None:
            self._append.flush()
            os.fsync(self._append.fileno())
            self._append.close()
            self._append = None

    def record_failure(self, cell_id: str, model: str, attack: str, error: str, detail: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = {"cell_id": cell_id, "model": model, "attack": attack, "error": error,
                "detail": detail, "time": time.time()}
        with (self.dir / FAILURES_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def write_plan(self, plan: Mapping[str, Any], spec_text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.dir / PLAN_FILE, json.dumps(plan, indent=1, default=str))
        _atomic_write(self.dir / SPEC_FILE, spec_text)

    def read_plan(self) -> dict[str, Any] | None:
        path = self.dir / PLAN_FILE
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def quarantine_unverified(self) -> list[str]:
        """Move result files the manifest does not vouch for into ``_quarantine/``."""
        good = {r.file for r in self.verified().values()}
        moved = []
        for rel in store.result_files(self.output):
            if rel in good:
                continue
            dest = self.output / QUARANTINE_DIR / f"{int(time.time())}" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.output / rel, dest)
            moved.append(rel)
        return moved


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
