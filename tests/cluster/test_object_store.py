"""Results on an object store (``s3://...``): shards, manifest and a real cell, against a real S3 server.

The server is moto's ``moto_server`` on 127.0.0.1 (:mod:`tests.cluster.s3_server`);
pyarrow's own S3 client talks to it as to AWS. What is checked:

- a shard is one object under its final key, written in one call: a retry
  overwrites it (exactly once), no temp object ever exists, and an upload killed
  halfway (a real SIGKILL) leaves no object at all;
- the manifest keeps its done log as write-once segments (no appends on an object
  store), verifies sizes with one listing, quarantines what it does not vouch for,
  and round-trips plan, spec and failures;
- a real cell computed by :class:`sweep.execution.worker.CellWorker` with an ``s3://``
  output has the same rows as the same cell written to a local folder.

``sweep run`` to an ``s3://`` output, end to end, is
:mod:`tests.cluster.test_sweep_on_s3`.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from sweep.execution.pipeline import prepare
from sweep.execution.worker import CellWorker, WorkContext
from sweep.results import manifest as manifest_mod
from sweep.results import store
from sweep.results.manifest import DoneRecord, Manifest
from sweep.results.plan import Plan
from tests.cluster.s3_server import list_objects as objects
from tests.execution.specs import base_spec, write_spec
from tests.results.tables import table

REPO = Path(__file__).resolve().parents[2]
BUCKET = "sweeps"


@pytest.fixture(scope="module")
def s3(s3_server):
    s3_server.create_bucket(BUCKET)
    return s3_server




def test_a_shard_is_one_object_and_a_retry_overwrites_it(s3):
    uri = s3.uri(BUCKET, "shards")
    store.ensure_output(uri)
    rel = store.shard_relpath("digits/cnn", "pgd/../x", "c1")
    store.write_shard(uri, rel, table(3))
    size = store.write_shard(uri, rel, table(5))  # a retried cell: same key, new content
    assert objects(uri) == {rel: size}  # nothing else: no temp object, no second copy
    assert store.result_sizes(uri) == {rel: size} and store.result_files(uri) == [rel]
    assert store.open_results(uri, [rel]).count_rows() == 5
    assert store.remove_temp_files(uri) == 0
    # the whole prefix reads as a hive dataset with the names decoded, as a local folder does
    df = store.open_results(uri).to_table().to_pandas()
    assert len(df) == 5 and set(df["model"]) == {"digits/cnn"} and set(df["attack"]) == {"pgd/../x"}
    with pytest.raises(FileNotFoundError, match="bucket 'missing-bucket' does not exist"):
        store.ensure_output(s3.uri("missing-bucket", "x"))


def test_an_upload_killed_halfway_leaves_no_object(s3, tmp_path):
    uri = s3.uri(BUCKET, "torn")
    source = tmp_path / "cell.parquet"
    store.write_shard(tmp_path / "local", "model=m/attack=a/c1.parquet", table(2000))
    (tmp_path / "local" / "model=m/attack=a/c1.parquet").rename(source)
    writer = subprocess.run(
        [sys.executable, "-m", "tests.cluster.torn_write", uri, "model=m/attack=a/c1.parquet", str(source)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert writer.returncode == -signal.SIGKILL, writer.stderr
    assert objects(uri) == {}  # half the bytes went out, but no object exists under any key
    assert Manifest(uri).verified() == {}


def test_manifest_segments_verification_quarantine_and_plan(s3, monkeypatch):
    uri = s3.uri(BUCKET, "manifest")
    monkeypatch.setattr(manifest_mod, "SEGMENT_SECONDS", 3600.0)  # batch everything after the first
    m = Manifest(uri)
    rels = {}
    for cid in ("c1", "c2", "c3"):
        rels[cid] = store.shard_relpath("m", "a", cid)
        size = store.write_shard(uri, rels[cid], table(3, cid))
        m.record(DoneRecord(cell_id=cid, file=rels[cid], rows=3, bytes=size))
    # the first record went out at once, the next two wait for the batch (a driver
    # killed now would recompute c2 and c3, overwriting their files)
    assert set(Manifest(uri).records()) == {"c1"}
    m.close()
    assert set(Manifest(uri).records()) == {"c1", "c2", "c3"}
    segments = [k for k in objects(uri) if k.startswith("_manifest/done/")]
    assert len(segments) == 2 and all(k.endswith(".jsonl") for k in segments)
    assert set(Manifest(uri).verified(["c1", "c2", "c3", "c9"])) == {"c1", "c2", "c3"}

    store.write_shard(uri, rels["c2"], table(4, "c2"))  # a different file under c2's key
    stray = store.shard_relpath("m", "a", "c4")  # and one no run recorded
    store.write_shard(uri, stray, table(1, "c4"))
    assert set(Manifest(uri).verified()) == {"c1", "c3"}
    assert sorted(Manifest(uri).quarantine_unverified()) == sorted([rels["c2"], stray])
    assert sorted(store.result_files(uri)) == sorted([rels["c1"], rels["c3"]])
    assert sum(1 for k in objects(uri) if k.startswith("_quarantine/")) == 2
    # readers of the prefix see the verified cells only: _manifest and _quarantine are skipped
    assert store.open_results(uri).count_rows() == 6

    m.write_plan(Plan(sweep_id="s"), "name: x\n")
    m.record_failure("c5", "m", "a", "ValueError: boom", "traceback")
    again = Manifest(uri)
    assert again.read_plan() == Plan(sweep_id="s")
    assert again.read_spec_text() == "name: x\n"
    assert sum(1 for k in objects(uri) if k.startswith("_manifest/failures/")) == 1
    assert [f["cell_id"] for f in again.failures()] == ["c5"]
    again.reset()
    assert Manifest(uri).records() == {}
    assert any(k.startswith("_manifest/done.replaced-") for k in objects(uri))


def test_a_real_cell_on_s3_has_the_rows_of_a_local_one(s3, tmp_path):
    spec = base_spec(tmp_path / "local", models=[{"name": "digits-cnn"}])
    spec["attacks"] = spec["attacks"][:1]
    prep = prepare(write_spec(tmp_path / "spec.yaml", spec))
    cell = prep.cells[0]
    uri = s3.uri(BUCKET, "cells")
    worker = CellWorker()
    local = worker.run(WorkContext(spec=prep.spec, layout=prep.layout, sweep_id=prep.sweep_id), cell)
    on_s3_spec = dataclasses.replace(prep.spec, output=uri)
    remote = worker.run(WorkContext(spec=on_s3_spec, layout=prep.layout, sweep_id=prep.sweep_id), cell)
    assert remote["file"] == local["file"] and remote["rows"] == local["rows"] == 8 * 3
    # the default keeps the first 16 samples' adversarials: this cell's 8, one more object
    assert remote["adv_file"] == local["adv_file"] and remote["adv_file"].startswith("_adversarials/")
    assert objects(uri) == {remote["file"]: remote["bytes"], remote["adv_file"]: remote["adv_bytes"]}

    m = Manifest(uri)
    m.record(DoneRecord.from_summary(remote, 0.0))
    m.close()
    assert set(Manifest(uri).verified()) == {cell.cell_id}
    assert set(Manifest(uri).complete([cell.cell_id], lambda _cid, rec: rec.adversarials == "first_n:16")) == {
        cell.cell_id}
    from sweep.results.adversarials import images, read_adversarials

    assert np.array_equal(images(read_adversarials(uri, remote["adv_file"])),
                          images(read_adversarials(tmp_path / "local", local["adv_file"])))

    def frame(output) -> pd.DataFrame:
        df = store.open_results(output, [local["file"]]).to_table().to_pandas()
        return df.drop(columns=["cell_seconds"]).sort_values(["sample_id", "epsilon"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(frame(uri), frame(tmp_path / "local"))
    # anyone can read it back with pyarrow alone, from the URI
    fs, base = pafs.FileSystem.from_uri(uri)
    assert ds.dataset(base, filesystem=fs, format="parquet", partitioning="hive").count_rows() == 24

