"""Faults a cluster survives, each ending with the same rows as an undisturbed run.

- a worker node lost mid-sweep (``Cluster.remove_node``: every process of the node
  killed at once);
- the driver SIGKILLed mid-sweep (``sweep run`` in its own session, SIGKILL to its
  process group), then the same command again (cells its orphaned workers finished
  after the kill are adopted whole, :mod:`sweep.execution.adoption`);
- a shard torn mid-write by a killed writer.

The other faults of issue 4 are tested with the sweep pipeline: the MLflow server
killed mid-sweep and ``sweep sync`` (tests/tracking/test_mlflow_server.py), a failing
model (tests/execution/test_run.py), truncated and stray result files quarantined and
recomputed (tests/execution/test_run.py::test_half_written_shard_is_never_read), and
adoption checked file by file (tests/execution/test_adoption.py).

The undisturbed run (``baseline``) computes the same spec on the fake GPU cluster;
rows are compared without ``cell_seconds``, the one column a re-run changes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import sweep.execution.pool
from sweep.analysis.curves import load_results
from sweep.execution.pipeline import prepare, run_sweep
from sweep.results import store
from sweep.results.manifest import Manifest
from tests.cluster.fake_cluster import fake_gpu_cluster
from tests.cluster.head import VENV_BIN
from tests.cluster.placements import PlacementRecordingWorker, read_placements
from tests.cluster.processes import kill_pids, leftovers, wait_gone
from tests.cluster.sweeps import (
    EPSILONS,
    ROW_KEY,
    SweepThread,
    driver_env,
    rows,
    slow_spec,
    write_spec,
)
from tests.cluster.torn_write import tear

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SAMPLES, SHARD_SIZE = 32, 2
CELLS = SAMPLES // SHARD_SIZE  # 16 cells of 2 samples x 3 epsilons
ROWS_PER_CELL = SHARD_SIZE * len(EPSILONS)
# One worker per GPU node (SPREAD), each node with a spare GPU and CPU, so a worker
# lost with its node can restart on the other one.
CLUSTER_RESOURCES = {"gpus_per_cell": 1, "max_workers": 2}
SWEEP_TIMEOUT_S = 240.0
LEFTOVER_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def cluster():
    with fake_gpu_cluster(gpu_nodes=2, gpus_per_node=2) as fake:
        yield fake


@pytest.fixture(scope="module")
def baseline(cluster, tmp_path_factory):
    """The undisturbed sweep on the cluster: its rows, cell ids and wall time."""
    root = tmp_path_factory.mktemp("baseline")
    spec = slow_spec(root / "out", samples=SAMPLES, shard_size=SHARD_SIZE, resources=CLUSTER_RESOURCES)
    prep = prepare(write_spec(root / "spec.yaml", spec))
    outcome = run_sweep(prep, progress=False, echo=lambda _: None)
    assert not outcome.failures and outcome.cells_done == CELLS
    df = rows(root / "out")
    assert len(df) == CELLS * ROWS_PER_CELL and not df.duplicated(ROW_KEY).any()
    return {"rows": df, "output": root / "out", "cells": {c.cell_id for c in prep.cells},
            "seconds": outcome.driver.wall_seconds}


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def test_worker_node_lost_mid_sweep(cluster, baseline, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep.execution.pool, "RayCellWorker", PlacementRecordingWorker)
    out = tmp_path / "out"
    spec = slow_spec(out, samples=SAMPLES, shard_size=SHARD_SIZE, resources=CLUSTER_RESOURCES)
    prep = prepare(write_spec(tmp_path / "spec.yaml", spec))
    thread = SweepThread(prep)

    def both_nodes_busy() -> bool:
        done = [p for p in read_placements(out) if p.phase == "done"]
        return len({p.node_id for p in done}) == 2 and len(done) >= 3

    _wait_for(lambda: both_nodes_busy() or not thread.is_alive(), SWEEP_TIMEOUT_S, "cells on both nodes")
    done_before = [p for p in read_placements(out) if p.phase == "done"]
    assert thread.is_alive() and len(done_before) < CELLS - 4, "the sweep ended before the fault"
    victim = done_before[-1].node_id
    removed_at = time.time()
    cluster.remove(victim)
    outcome = thread.outcome(SWEEP_TIMEOUT_S)
    finished_at = time.time()

    assert not outcome.failures, outcome.failures
    assert outcome.cells_done == CELLS
    assert outcome.driver.workers_lost >= 1  # the victim's worker had cells in flight
    notes = read_placements(out)
    on_victim_unfinished = ({p.cell_id for p in notes if p.node_id == victim and p.phase == "start"}
                            - {p.cell_id for p in notes if p.node_id == victim and p.phase == "done"})
    survivors_done = {p.cell_id for p in notes if p.node_id != victim and p.phase == "done"}
    assert on_victim_unfinished <= survivors_done  # what the lost node was doing ran again elsewhere
    # every (cell, sample, epsilon) row exactly once, and the same rows as the undisturbed run
    df = rows(out)
    assert not df.duplicated(ROW_KEY).any()
    pd.testing.assert_frame_equal(df, baseline["rows"])
    assert set(Manifest(out).verified()) == baseline["cells"]

    requeued = [p for p in notes if p.cell_id in on_victim_unfinished and p.node_id != victim
                and p.phase == "start"]
    restarted = {p.actor_id for p in notes if p.node_id == victim} & {
        p.actor_id for p in notes if p.node_id != victim and p.time > removed_at}
    print(f"\nnode loss: {len(done_before)} cells done at removal, {len(on_victim_unfinished)} in flight "
          f"on the lost node, re-started elsewhere after "
          f"{min((p.time for p in requeued), default=float('nan')) - removed_at:.1f}s; sweep done "
          f"{finished_at - removed_at:.1f}s after the removal; lost worker restarted on the other "
          f"node: {bool(restarted)}; retries {outcome.driver.retries}; baseline wall time "
          f"{baseline['seconds']:.1f}s, this run {outcome.driver.wall_seconds:.1f}s")


def test_driver_sigkilled_mid_sweep_then_the_same_command_resumes(baseline, tmp_path):
    out = tmp_path / "out"
    spec_path = write_spec(tmp_path / "spec.yaml",
                           slow_spec(out, samples=SAMPLES, shard_size=SHARD_SIZE))
    ray_tmp = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))  # short: Ray puts sockets there
    env = driver_env(ray_tmp)
    command = [str(VENV_BIN / "sweep"), "run", str(spec_path), "--no-progress", "--num-cpus", "2"]
    first_log = tmp_path / "first.log"
    sessions: list[int] = []
    try:
        with first_log.open("wb") as log:
            driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        sessions.append(driver.pid)
        try:
            _wait_for(lambda: driver.poll() is not None
                      or len(Manifest(out).records()) >= 1,
                      SWEEP_TIMEOUT_S, "a recorded cell")  # the first segment goes out at once
            assert driver.poll() is None, f"the sweep ended before the kill:\n{first_log.read_text()}"
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
        assert driver.returncode == -signal.SIGKILL
        # Ray's workers sit in process groups of their own: they outlive the kill for a
        # moment, then exit by themselves once their raylet is gone.
        gone_after, left = wait_gone(driver.pid, str(ray_tmp), LEFTOVER_TIMEOUT_S)
        assert not left, f"processes of the killed run alive {LEFTOVER_TIMEOUT_S:.0f}s after: {left}"

        verified = Manifest(out).verified()
        k = len(verified)
        assert 0 < k < CELLS, k
        strays = set(store.result_files(out)) - {r.file for r in verified.values()}
        # Before any resume, what a reader finds is whole cells with the right rows: files
        # the manifest does not list yet (cells finished by orphaned workers after the
        # kill) are complete, and a torn temp file is invisible to readers.
        partial = rows(out)
        assert set(partial.groupby("cell_id").size()) == {ROWS_PER_CELL}
        expected = baseline["rows"][baseline["rows"]["cell_id"].isin(set(partial["cell_id"]))]
        pd.testing.assert_frame_equal(partial, expected.reset_index(drop=True))
        kept = {f: (out / f).stat().st_mtime_ns for f in {r.file for r in verified.values()} | strays}

        again = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
        sessions.append(again.pid)
        text, _ = again.communicate(timeout=SWEEP_TIMEOUT_S)
        assert again.returncode == 0, text
        # cells the orphaned workers finished are whole: adopted, not recomputed
        j = len(strays)
        assert f"{CELLS} cells: {k + j} already done, computing {CELLS - k - j}" in text, text
        assert CELLS - k - j == 0 or f"computed {CELLS - k - j} cell(s)" in text, text
        assert (f"adopted {j} whole result file(s)" in text) == (j > 0), text
        assert "does not vouch for" not in text, text  # nothing to quarantine
        assert {f: (out / f).stat().st_mtime_ns for f in kept} == kept  # done and adopted: untouched
        pd.testing.assert_frame_equal(rows(out), baseline["rows"])
        assert set(Manifest(out).verified()) == baseline["cells"]
        _, left = wait_gone(again.pid, str(ray_tmp), LEFTOVER_TIMEOUT_S)
        assert not left, f"processes of the finished run still alive: {left}"
        print(f"\ndriver kill: {k} of {CELLS} cells recorded at the kill, {len(strays)} more written "
              f"by orphaned workers (adopted); leftover Ray processes gone {gone_after:.1f}s after the kill")
    finally:
        for session in sessions:  # only what these runs started, by pid
            kill_pids(leftovers(session, str(ray_tmp)))
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_shard_torn_mid_write_is_never_read(baseline, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(baseline["output"], out)
    victim = sorted(Manifest(out).verified().values(), key=lambda r: r.cell_id)[0]
    tear(out, victim.file, tmp_path / "victim.parquet")  # the cell is being written for the first time

    expected = baseline["rows"][baseline["rows"]["cell_id"] != victim.cell_id].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows(out), expected)  # pd.read_parquet skips the torn file
    assert len(load_results(out)) == len(expected)  # so does `sweep curves`
    assert victim.file not in store.result_files(out)
    assert victim.cell_id not in Manifest(out).verified()  # a re-run computes it again
    assert Counter(rows(out)["cell_id"]).most_common(1)[0][1] == ROWS_PER_CELL
