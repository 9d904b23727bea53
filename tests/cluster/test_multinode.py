"""Several nodes on one machine: cells that ask for GPUs run on GPU nodes only, spread over them.

The cluster (:mod:`tests.cluster.fake_cluster`): a head with 1 CPU and no GPU, two
worker nodes with 2 CPUs and 1 (declared) GPU each, and one CPU-only worker node
with 2 CPUs. A spec with ``gpus_per_cell: 0.5`` runs through the real pipeline
(:func:`sweep.execution.pipeline.run_sweep` joined to the cluster); a test-only worker
(:mod:`tests.cluster.placements`) notes the node Ray placed each cell on.
"""

from __future__ import annotations

from collections import Counter

import pytest

import sweep.execution.pool
from sweep.errors import SpecError
from sweep.execution.pipeline import prepare, run_sweep
from tests.cluster.fake_cluster import fake_gpu_cluster
from tests.cluster.placements import PlacementRecordingWorker, read_placements
from tests.cluster.sweeps import EPSILONS, ROW_KEY, rows, slow_spec, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SAMPLES, SHARD_SIZE = 24, 2  # 12 cells


@pytest.fixture(scope="module")
def cluster():
    with fake_gpu_cluster(gpu_nodes=2, gpus_per_node=1, cpu_nodes=1) as fake:
        yield fake


def test_gpu_cells_spread_over_gpu_nodes_and_nowhere_else(cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep.execution.pool, "RayCellWorker", PlacementRecordingWorker)
    out = tmp_path / "out"
    spec = slow_spec(out, samples=SAMPLES, shard_size=SHARD_SIZE, delay_s=0.01,
                     resources={"gpus_per_cell": 0.5})
    prep = prepare(write_spec(tmp_path / "spec.yaml", spec))
    lines: list[str] = []
    outcome = run_sweep(prep, progress=False, echo=lines.append)

    assert not outcome.failures, outcome.failures
    assert outcome.cells_done == len(prep.cells) == SAMPLES // SHARD_SIZE
    # 2 GPUs / 0.5 GPU per cell: four workers, two sharing each node's GPU
    assert outcome.driver.workers == 4

    done = [p for p in read_placements(out) if p.phase == "done"]
    assert Counter(p.cell_id for p in done) == Counter(c.cell_id for c in prep.cells)  # each once
    nodes = Counter(p.node_id for p in done)
    # every cell ran on a GPU node, and both GPU nodes took cells ...
    assert set(nodes) == set(cluster.gpu_nodes), (nodes, cluster)
    # ... never on the head or the CPU-only node, although both have CPUs to spare
    assert cluster.head_id not in nodes and not set(nodes) & set(cluster.cpu_nodes)
    # Ray assigned each worker a GPU (on these nodes there is only GPU "0")
    assert {p.gpu_ids for p in done} == {("0",)}
    # at most two workers share a node's GPU (0.5 each). Not "exactly two that ran cells":
    # cells start on the first worker placed, so a worker placed late may find the queue
    # already empty and be released without a cell (issue 11's pool)
    workers_per_node = {n: {p.actor_id for p in done if p.node_id == n} for n in nodes}
    assert all(1 <= len(a) <= 2 for a in workers_per_node.values()), workers_per_node

    df = rows(out)
    assert len(df) == SAMPLES * len(EPSILONS)
    assert not df.duplicated(ROW_KEY).any()
    assert set(df["cell_id"]) == {c.cell_id for c in prep.cells}


def test_fractions_that_do_not_pack_into_one_node_are_counted_per_node(cluster, tmp_path):
    # 0.6 GPU per cell on two 1-GPU nodes: one worker per node. Counting the cluster's
    # total (floor(2 / 0.6) = 3) would start a third worker that no node can place.
    spec = slow_spec(tmp_path / "out", samples=8, shard_size=2, delay_s=0.0,
                     resources={"gpus_per_cell": 0.6})
    prep = prepare(write_spec(tmp_path / "spec.yaml", spec))
    outcome = run_sweep(prep, progress=False, echo=lambda _: None)
    assert not outcome.failures and outcome.cells_done == 4
    assert outcome.driver.workers == 2


def test_a_cell_asking_for_more_gpus_than_any_node_has_is_refused(cluster, tmp_path):
    # two GPUs in the cluster, but one per node: a 2-GPU worker could never be placed
    # (it would wait for the stall timeout); the driver says so before starting workers
    spec = slow_spec(tmp_path / "out", samples=4, shard_size=2, resources={"gpus_per_cell": 2})
    prep = prepare(write_spec(tmp_path / "spec.yaml", spec))
    with pytest.raises(SpecError, match=r"resources\.gpus_per_cell: no node has that many GPUs "
                                        r"\(the largest has 1\)"):
        run_sweep(prep, progress=False, echo=lambda _: None)
