"""Fault injection into every write of the output (issue 15): shard files, the plan, the
done segments. A seeded plan fails the k-th write (an ``OSError``: ENOSPC or EIO), often
after writing part of it, which ends that run at that point; the next run resumes.
After as many runs as it takes, every planned cell's rows are in the output exactly
once, equal to a run without faults, and no done segment holds a torn line.

The runs are real :func:`sweep.execution.pipeline.run_sweep` calls (lease, temp-file cleanup,
adoption, quarantine, plan, resume), with the Ray driver replaced by the same
:class:`~sweep.execution.worker.CellWorker` run in this process, so that the faults, injected
by replacing ``os`` in :mod:`sweep.results.atomic` (through which the store and the
manifest write every file), reach every write.
"""

from __future__ import annotations

import errno
import json
import os
import random
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from sweep.execution import pipeline
from sweep.execution.dispatcher import DriverResult
from sweep.execution.worker import CellWorker, WorkContext
from sweep.results import atomic
from sweep.results.manifest import DoneRecord, Manifest
from tests.execution.running import KEY, rows
from tests.execution.specs import base_spec, write_spec

_WORKER = CellWorker()  # one per module: models stay loaded across runs


class Crash(OSError):
    """The injected fault (an OSError, as the real ones)."""


class Faults:
    """Counts writes; the ``fail_at``-th one fails, after writing part of its data."""

    def __init__(self, rng: random.Random, fail_at: int | None) -> None:
        self.rng, self.fail_at, self.writes = rng, fail_at, 0
        self.fired: str | None = None

    def hit(self, where: str) -> bool:
        self.writes += 1
        if self.writes == self.fail_at:
            self.fired = where
            return True
        return False

    def error(self, where: str) -> OSError:
        code = self.rng.choice([errno.ENOSPC, errno.EIO])
        return Crash(code, f"injected {os.strerror(code)} in {where}")

    # -- the primitives every whole-file write goes through (sweep.results.atomic) ---------
    def os_write(self, fd: int, data) -> int:  # the temp file's bytes
        if self.hit("os.write"):
            part = bytes(data)[: self.rng.randrange(len(data))]
            if part:
                os.write(fd, part)  # a torn temp file on disk, then the error
            raise self.error("os.write")
        return os.write(fd, data)

    def os_replace(self, src, dst) -> None:  # the rename into place
        if self.hit("os.replace"):
            raise self.error("os.replace")
        os.replace(src, dst)


def _proxy(module, **overrides):
    """``module`` with some functions replaced (the rest delegated)."""
    return SimpleNamespace(**{**{k: getattr(module, k) for k in dir(module) if not k.startswith("__")},
                              **overrides})


def _in_process_cells(spec, layout, sweep_id, cells, manifest, pool, **_ignored) -> DriverResult:
    """The driver's recording loop without Ray: compute, write the shard, record it."""
    result = DriverResult()
    ctx = WorkContext(spec=spec, layout=layout, sweep_id=sweep_id)
    for cell in cells:
        summary = _WORKER.run(ctx, cell)
        manifest.record(DoneRecord.from_summary(summary, time.time()))
        result.computed += 1
    return result


def _run(spec_path: Path, monkeypatch, faults: Faults | None) -> pipeline.RunOutcome:
    with monkeypatch.context() as m:
        m.setattr(pipeline, "run_cells", _in_process_cells)
        if faults is not None:
            m.setattr(atomic, "os", _proxy(os, write=faults.os_write, replace=faults.os_replace))
        prep = pipeline.prepare(spec_path)
        return pipeline.run_sweep(prep, progress=False, echo=lambda _: None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The rows of a run without faults."""
    folder = tmp_path_factory.mktemp("reference")
    spec = write_spec(folder / "spec.yaml", _spec(folder / "out"))
    mp = pytest.MonkeyPatch()
    try:
        outcome = _run(spec, mp, None)
    finally:
        mp.undo()
    assert outcome.cells_done == 16
    return rows(folder / "out")


def _spec(out: Path) -> dict:
    # 16 cells; the 4 of the first shard also write their adversarials (first_n: 4)
    return base_spec(out, dataset={"name": "digits", "samples": 16, "shard_size": 4},
                     adversarials={"keep": "first_n", "n": 4})


def _segments_whole(out: Path) -> None:
    """Every done segment (temp files aside) ends with a whole line, each line JSON."""
    for path in (out / "_manifest" / "done").glob("[!.]*.jsonl"):
        data = path.read_text(encoding="utf-8")
        assert data.endswith("\n"), f"torn last line in {path.name}"
        for line in data.splitlines():
            json.loads(line)


@pytest.mark.parametrize("seed", range(6))
def test_random_write_faults_then_resume_give_every_row_once(seed, tmp_path, monkeypatch, reference):
    rng = random.Random(seed)
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "spec.yaml", _spec(out))
    fired = []
    for attempt in range(40):
        # a fresh run writes about 40 times (the plan and the spec, then per cell: the
        # temp file and its rename; the done segments likewise): the first run always
        # fails somewhere in it, later ones now and then nowhere (the run completes)
        faults = Faults(rng, rng.randint(1, 34 if attempt == 0 else 50))
        try:
            outcome = _run(spec, monkeypatch, faults)
        except Crash:
            fired.append(faults.fired)
            _segments_whole(out)
            continue
        if outcome.cells_done == 16:
            break
    else:
        pytest.fail(f"not done after 40 runs; faults: {fired}")
    assert fired, "no fault fired: the plan tested nothing"
    _segments_whole(out)
    got = rows(out)  # pandas over the whole folder, as a user reads it
    assert not got.duplicated(KEY).any()
    assert got["cell_id"].nunique() == 16
    assert got.drop(columns=["sweep_id"]).equals(reference.drop(columns=["sweep_id"]))
    assert not list(out.glob("model=*/attack=*/.tmp-*"))
    # every cell's adversarials the manifest vouches for are whole, and none is missing
    stored = [r for r in Manifest(out).records().values() if r.adv_file]
    assert len(stored) == 4
    for rec in stored:
        assert (out / rec.adv_file).stat().st_size == rec.adv_bytes
        assert len(pq.read_table(out / rec.adv_file)) in (4 * 3, 4 * 2)  # 4 samples x linf / l2 epsilons


def test_the_faults_are_real(tmp_path, monkeypatch):
    """Control: a write that fails part-way leaves the old file whole and no temp file."""
    path = tmp_path / "plan.json"
    atomic.write_file(path, b'{"a":1}')
    faults = Faults(random.Random(1), fail_at=1)
    monkeypatch.setattr(atomic, "os", _proxy(os, write=faults.os_write, replace=faults.os_replace))
    with pytest.raises(Crash):
        atomic.write_file(path, b'{"b":2222222222222222}')
    assert faults.fired == "os.write"
    assert path.read_bytes() == b'{"a":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
