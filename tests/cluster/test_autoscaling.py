"""On a real autoscaling cluster the worker pool follows the cluster (issue 11).

One autoscaling head for the whole module (:mod:`tests.cluster.autoscaling`: Ray's
own autoscaler with its ``fake_multinode`` provider; GPU nodes from zero up to 3,
gone 6 s after they idle). The sweeps go through the real pipeline joined to it;
a test-only worker (:mod:`tests.cluster.placements`) notes the node of each cell.

- from zero GPU nodes: the sweep's workers are the demand, the autoscaler
  launches nodes, cells run on several of them, and the nodes go away after;
- with one GPU node up: cells start there before the pool is complete, more nodes
  join and take cells;
- a node lost mid-sweep (its raylet SIGKILLed): the same rows as undisturbed, once;
  before the kill, ``sweep status`` shows the workers placed on the nodes;
- a shape no node type can hold: exit 2 before anything is written;
- a shape only a node type that never arrives can hold: the scale_timeout message.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pandas as pd
import pytest
from click.testing import CliRunner

import sweep.execution.pool
from sweep.cli.main import cli
from sweep.cluster import status as cluster_status
from sweep.execution.pipeline import prepare, run_sweep
from tests.cluster.autoscaling import GPU_NODES_MAX, autoscaling_cluster
from tests.cluster.placements import PlacementRecordingWorker, read_placements
from tests.cluster.sweeps import EPSILONS, ROW_KEY, SweepThread, rows, slow_spec, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SAMPLES, SHARD_SIZE = 24, 2
CELLS = SAMPLES // SHARD_SIZE  # 12 cells of about a second each (0.1 s per forward pass)
DELAY_S = 0.1
GPU_CELLS = {"gpus_per_cell": 1}
SWEEP_TIMEOUT_S = 300.0
SCALE_DOWN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def cluster():
    with autoscaling_cluster() as c:
        yield c


@pytest.fixture
def placements(monkeypatch):
    monkeypatch.setattr(sweep.execution.pool, "RayCellWorker", PlacementRecordingWorker)


def gpu_spec(tmp_path, resources=GPU_CELLS, **kwargs):
    spec = slow_spec(tmp_path / "out", samples=SAMPLES, shard_size=SHARD_SIZE, delay_s=DELAY_S,
                     resources=resources, name="autoscaling", **kwargs)
    return prepare(write_spec(tmp_path / "spec.yaml", spec))


@pytest.fixture(scope="module")
def from_zero(cluster, tmp_path_factory):
    """The sweep from zero GPU nodes: its outcome, placements, stderr and timings."""
    cluster.wait_for_gpu_nodes(0)
    root = tmp_path_factory.mktemp("from-zero")
    prep = gpu_spec(root)
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep.execution.pool, "RayCellWorker", PlacementRecordingWorker)
        t0 = time.time()
        outcome = run_sweep(prep, progress=False, echo=lines.append)
    ended = time.time()
    down_after = cluster.wait_for_gpu_nodes(0, SCALE_DOWN_TIMEOUT_S)
    return {"prep": prep, "outcome": outcome, "out": root / "out", "started": t0, "ended": ended,
            "down_after": down_after}


def test_from_zero_gpu_nodes_the_sweep_scales_the_cluster_up_and_back_down(cluster, from_zero):
    outcome, prep = from_zero["outcome"], from_zero["prep"]
    assert not outcome.failures, outcome.failures
    assert outcome.cells_done == CELLS
    # the demand: one worker per node the autoscaler may launch that holds a cell, not
    # per live GPU (there were none): 3 gpu_node + 1 gpu2_unavailable (1 CPU: one cell)
    assert outcome.driver.workers == GPU_NODES_MAX + 1
    done = [p for p in read_placements(from_zero["out"]) if p.phase == "done"]
    assert Counter(p.cell_id for p in done) == Counter(c.cell_id for c in prep.cells)  # each once
    nodes = Counter(p.node_id for p in done)
    assert len(nodes) >= 2, nodes  # cells ran on more than one node the autoscaler started
    assert outcome.driver.nodes >= len(nodes)  # nodes a worker was placed on
    # the worker only the never-launching type could hold was withdrawn in the tail
    assert outcome.driver.withdrawn >= 1
    assert {p.gpu_ids for p in done} == {("0",)}  # each worker got its node's GPU from Ray
    df = rows(from_zero["out"])
    assert len(df) == SAMPLES * len(EPSILONS) and not df.duplicated(ROW_KEY).any()
    # ... and the nodes went away once the sweep no longer needed them (fixture waited)
    print(f"\nfrom zero: first worker placed {outcome.driver.first_worker_seconds:.1f}s after dispatch "
          f"began, {len(nodes)} nodes took cells ({dict(Counter(nodes.values()))} cells per node), "
          f"sweep {from_zero['ended'] - from_zero['started']:.1f}s, GPU nodes gone "
          f"{from_zero['down_after']:.1f}s after it ended; {outcome.driver.withdrawn} unplaced worker(s) "
          f"withdrawn, {outcome.driver.released} idle worker(s) released in the tail")


def test_with_one_gpu_node_up_cells_start_at_once_and_more_nodes_join(cluster, from_zero, tmp_path, placements):
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[{"CPU": 1, "GPU": 1}])  # keeps one GPU node up (a floor)
    try:
        cluster.wait_for_gpu_nodes(1)
        (first_node,) = cluster.gpu_nodes()
        prep = gpu_spec(tmp_path)
        outcome = run_sweep(prep, progress=False, echo=lambda _: None)
    finally:
        request_resources(bundles=[])
    assert not outcome.failures and outcome.cells_done == CELLS
    notes = read_placements(tmp_path / "out")
    joined_later = {p.node_id for p in notes} - {first_node}
    assert joined_later, "no node joined during the sweep"
    first_on = {node: min(p.time for p in notes if p.node_id == node) for node in {p.node_id for p in notes}}
    # computing began on the node that was up before the pool the driver asked for was
    # complete (the last node to join had its first cell later) ...
    assert first_on[first_node] < max(first_on.values())
    first_elsewhere = min(t for node, t in first_on.items() if node != first_node)
    # ... then the nodes that joined took cells too
    assert {p.node_id for p in notes if p.phase == "done"} >= joined_later
    pd.testing.assert_frame_equal(rows(tmp_path / "out"), rows(from_zero["out"]))
    print(f"\none node up: first cell started there {first_elsewhere - first_on[first_node]:.1f}s before "
          f"any other node had one; {len(joined_later)} node(s) joined and took cells")


def test_a_node_lost_mid_sweep_rows_once_and_identical(cluster, from_zero, tmp_path, placements, monkeypatch):
    prep = gpu_spec(tmp_path)
    out = tmp_path / "out"
    thread = SweepThread(prep)
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while thread.is_alive() and time.monotonic() < deadline:
        done = [p for p in read_placements(out) if p.phase == "done"]
        if len({p.node_id for p in done}) >= 2 and len(done) >= 2:
            break
        time.sleep(0.05)
    assert thread.is_alive() and len(done) < CELLS - 3, "the sweep ended before the fault"
    # `sweep status` shows the pool as it is: workers placed on the GPU nodes
    monkeypatch.setattr(cluster_status, "WORKER_CLASSES", ("PlacementRecordingWorker",))
    status = CliRunner().invoke(cli, ["status", "--address", cluster.head.dashboard_url])
    assert status.exit_code == 0, status.output
    match = re.search(r"^cluster: nodes (\d+) alive \((\d+) with GPUs, \d+ GPUs\); sweep workers "
                      r"(\d+) placed on (\d+) node\(s\), using (\d+) GPUs", status.output, re.M)
    assert match, status.output
    nodes, gpu_nodes, placed, on_nodes, gpus = map(int, match.groups())
    assert nodes == gpu_nodes + 1 and on_nodes >= 2 and placed == gpus >= 2, status.output
    # one job's workers (`sweep status JOB`): this driver's job has them, another has none
    import ray

    mine = cluster_status.read(cluster.head.dashboard_url, {}, ray.get_runtime_context().get_job_id())
    assert mine.workers_placed >= 2 and mine.worker_nodes >= 2, mine
    assert cluster_status.read(cluster.head.dashboard_url, {}, "ff000000").workers_placed == 0
    victim = done[-1].node_id
    cluster.kill_node(victim)
    outcome = thread.outcome(SWEEP_TIMEOUT_S)
    assert not outcome.failures, outcome.failures
    assert outcome.cells_done == CELLS
    # the cells the lost worker had in hand or queued came back to the queue ...
    assert outcome.driver.workers_lost >= 1 and outcome.driver.retries >= outcome.driver.workers_lost
    notes = read_placements(out)
    unfinished = ({p.cell_id for p in notes if p.node_id == victim and p.phase == "start"}
                  - {p.cell_id for p in notes if p.node_id == victim and p.phase == "done"})
    # ... and ran on the other nodes
    assert unfinished <= {p.cell_id for p in notes if p.node_id != victim and p.phase == "done"}
    df = rows(out)
    assert not df.duplicated(ROW_KEY).any()
    pd.testing.assert_frame_equal(df, rows(from_zero["out"]))  # the undisturbed run's rows
    print(f"\nnode lost: {len(done)} cells done at the kill, {outcome.driver.workers_lost} re-queued "
          f"({len(unfinished)} of them started on the lost node), "
          f"retries {outcome.driver.retries}, sweep {outcome.driver.wall_seconds:.1f}s")


def test_a_shape_no_node_type_can_hold_is_refused_before_anything_is_written(cluster, tmp_path):
    spec = slow_spec(tmp_path / "out", samples=4, shard_size=2, resources={"gpus_per_cell": 4})
    path = write_spec(tmp_path / "spec.yaml", spec)
    result = CliRunner().invoke(cli, ["run", str(path), "--address", cluster.address, "--no-progress"])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "resources.gpus_per_cell" in line and "(got 4.0)" in line, line
    assert "no node has that many GPUs (the largest has 2)" in line, line
    assert "the autoscaler can launch gpu_node (CPU 1, GPU 1) x3" in line, line
    assert not (tmp_path / "out").exists()


def test_a_possible_shape_that_never_arrives_fails_after_scale_timeout(cluster, tmp_path):
    # 2 GPUs per cell: only the node type whose launches always fail can hold it
    spec = slow_spec(tmp_path / "out", samples=4, shard_size=2,
                     resources={"gpus_per_cell": 2, "scale_timeout": 5})
    path = write_spec(tmp_path / "spec.yaml", spec)
    t0 = time.monotonic()
    result = CliRunner().invoke(cli, ["run", str(path), "--address", cluster.address, "--no-progress"])
    waited = time.monotonic() - t0
    assert result.exit_code == 1, result.output
    assert ("stopped waiting: no worker placed within resources.scale_timeout (5s): waiting for GPU "
            "nodes (2 GPU, 1 CPU per worker): 0 of 1 workers placed") in result.output, result.output
    assert "2 cell(s) failed" in result.output
    assert 5 <= waited < 120, waited  # the timeout, plus loading the spec and the model
    import ray

    assert not [n for n in ray.nodes() if n["Resources"].get("GPU", 0) >= 2]  # none ever joined
