"""Parquet shards (atomic, escaped partition names, fixed schema) and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sweep.results import store
from sweep.results.manifest import DoneRecord, Manifest
from sweep.results.plan import Plan
from tests.results.tables import table


@pytest.mark.parametrize("name", ["../../evil", "a/b", "/abs", "..", "ünï côdé", "x=y%20"])
def test_names_cannot_escape_and_round_trip(tmp_path, name):
    out = tmp_path / "out"
    rel = store.shard_relpath(name, "pgd/../x", "abc123")
    store.write_shard(out, rel, table())
    written = (out / rel).resolve()
    assert written.is_relative_to(out.resolve())
    assert written.parent.parent.parent == out.resolve()  # exactly model=/attack=/file
    df = pd.read_parquet(out)
    assert set(df["model"].astype(str)) == {name} and set(df["attack"].astype(str)) == {"pgd/../x"}


def test_bad_names_are_refused():
    with pytest.raises(ValueError):
        store.shard_relpath("", "a", "c")
    with pytest.raises(ValueError):
        store.shard_relpath("m", "a\n", "c")
    with pytest.raises(ValueError):
        store.shard_relpath("m", "a", "../c")


def test_write_is_atomic_and_overwrites(tmp_path):
    rel = store.shard_relpath("m", "a", "c1")
    store.write_shard(tmp_path, rel, table(3))
    size = store.write_shard(tmp_path, rel, table(5))  # a retried cell: same file, new content
    assert size == (tmp_path / rel).stat().st_size
    assert store.read_shard(tmp_path / rel).num_rows == 5
    assert [p.name for p in (tmp_path / rel).parent.iterdir()] == ["c1.parquet"]  # no temp left


def test_reading_only_verified_files(tmp_path):
    good = store.shard_relpath("m", "a", "c1")
    store.write_shard(tmp_path, good, table(3))
    (tmp_path / "model=m" / "attack=a" / "c2.parquet").write_bytes(b"half a file")
    (tmp_path / "model=m" / "attack=a" / ".tmp-xyz-c3.parquet").write_bytes(b"temp")
    assert store.open_results(tmp_path, [good]).count_rows() == 3
    assert sorted(store.result_files(tmp_path)) == [good, "model=m/attack=a/c2.parquet"]
    assert store.remove_temp_files(tmp_path) == 1


def test_manifest_verifies_files_and_survives_a_cut_line(tmp_path):
    m = Manifest(tmp_path)
    for cid in ("c1", "c2"):
        rel = store.shard_relpath("m", "a", cid)
        size = store.write_shard(tmp_path, rel, table())
        m.record(DoneRecord(cell_id=cid, file=rel, rows=3, bytes=size))
    m.close()
    segments = sorted((tmp_path / "_manifest" / "done").iterdir())
    assert segments and all(p.suffix == ".jsonl" for p in segments)  # write-once segments
    (tmp_path / "_manifest" / "done" / ".tmp-dead-x.jsonl").write_text('{"cell_id": "c3"}\n')
    (tmp_path / "_manifest" / "done.jsonl").write_text(  # a log appended by an earlier version
        '{"cell_id": "c0", "file": "x", "rows": 1, "bytes": 1}\n{"cell_id": "c3", "fi')
    assert set(m.records()) == {"c0", "c1", "c2"}  # a killed writer's temp file and a cut line: skipped
    (tmp_path / store.shard_relpath("m", "a", "c2")).write_bytes(b"damaged")
    assert set(m.verified()) == {"c1"}
    assert set(m.verified(["c2", "c9"])) == set()
    assert m.quarantine_unverified() == [store.shard_relpath("m", "a", "c2")]
    assert len(pd.read_parquet(tmp_path)) == 3  # the `_manifest` / `_quarantine` folders are ignored
    m.reset()
    assert m.records() == {}
    m.record_failure("c9", "m", "a", "RuntimeError: x", "trace")
    assert [f["cell_id"] for f in m.failures()] == ["c9"]


def test_plan_round_trip(tmp_path):
    m = Manifest(tmp_path)
    m.write_plan(Plan(sweep_id="s"), "name: x\n")
    assert m.read_plan() == Plan(sweep_id="s")
    assert (tmp_path / "_manifest" / "spec.yaml").read_text() == "name: x\n"
    assert json.loads((tmp_path / "_manifest" / "plan.json").read_text())["sweep_id"] == "s"


def test_output_listing_of_missing_folder(tmp_path: Path):
    assert store.result_files(tmp_path / "none") == []


def test_files_written_for_later_appear_whole_at_sync(tmp_path, monkeypatch):
    from sweep.results import atomic

    later = atomic.SyncLater()
    for name in ("a/x.bin", "b/y.bin"):
        assert atomic.write(atomic.LOCAL, str(tmp_path / name), b"12345", later=later) == 5
    assert not (tmp_path / "a/x.bin").exists()  # only its temp file, until the sync
    later.sync()
    assert (tmp_path / "a/x.bin").read_bytes() == b"12345" == (tmp_path / "b/y.bin").read_bytes()
    assert not [p for p in tmp_path.rglob(".tmp-*")]

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    atomic.write(atomic.LOCAL, str(tmp_path / "a/z.bin"), b"new", later=later)
    monkeypatch.setattr(atomic, "_syncfs", no_space)
    with pytest.raises(OSError):
        later.sync()
    assert not (tmp_path / "a/z.bin").exists() and not [p for p in tmp_path.rglob(".tmp-*")]
