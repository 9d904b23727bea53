"""The dispatcher: cells go to workers that already hold their model; retries go first."""

from __future__ import annotations

import pytest

from sweep.execution.dispatcher import CellQueue
from sweep.execution.placement import plan_workers
from sweep.spec.grid import Cell


def cell(model: str, i: int) -> Cell:
    return Cell(f"{model}{i}", model, "noise", "linf", (0.1,), i, 0, 1, i)


def test_workers_keep_to_their_model():
    d = CellQueue(workers=2, models_per_worker=1)
    for m in ("A", "B"):
        for i in range(4):
            d.push(cell(m, i))
    first = [d.pop_for(0)[0].model, d.pop_for(1)[0].model]
    assert first == ["A", "B"]  # the second worker takes the model nobody holds
    order = [(w, d.pop_for(w)[0].model) for w in (0, 1, 0, 1, 0, 1)]
    assert order == [(0, "A"), (1, "B")] * 3
    assert d.pop_for(0) is None and d.pending == 0


def test_a_big_model_spreads_over_idle_workers():
    d = CellQueue(workers=3, models_per_worker=1)
    for i in range(9):
        d.push(cell("A", i))
    d.push(cell("B", 0))
    picks = [d.pop_for(w)[0].model for w in range(3)]
    assert picks == ["A", "A", "A"]  # 9 cells of A beat 1 of B per worker holding it


def test_retry_goes_first_and_lru_capacity():
    d = CellQueue(workers=1, models_per_worker=2)
    for m in ("A", "B", "C"):
        d.push(cell(m, 0))
        d.push(cell(m, 1))
    c, attempt = d.pop_for(0)
    d.push(c, attempt + 1, front=True)
    assert d.pop_for(0) == (c, 1)
    d.forget(0)
    assert d.pending == 5 and len(d.drain()) == 5 and d.pending == 0


def test_a_call_carries_the_cells_queued_behind_of_one_model_and_attack():
    d = CellQueue(workers=1, models_per_worker=1)
    cells = [cell("a", i) for i in range(5)]
    other = Cell("b-atk", "a", "pgd", "linf", (0.1,), 9, 0, 1, 9)
    for c in [*cells[:3], other, *cells[3:]]:
        d.push(c)
    group = d.pop_group(0, max_samples=100, max_cells=100)
    assert [c for c, _ in group] == cells[:3] and d.pending == 3  # stops at another attack
    assert [c for c, _ in d.pop_group(0, max_samples=100, max_cells=100)] == [other]
    assert [c for c, _ in d.pop_group(0, max_samples=1, max_cells=100)] == [cells[3]]  # samples
    d.push(cells[0], 2, front=True)  # a retry goes first and keeps its attempt
    assert d.pop_group(0, max_samples=100, max_cells=1) == [(cells[0], 2)]
    assert d.pop_group(0, max_samples=100, max_cells=100) == [(cells[4], 0)]
    assert d.pop_group(0, max_samples=100, max_cells=100) == [] and d.pending == 0


def test_worker_count_from_resources(tmp_path):
    from sweep.spec.config import parse_spec
    from tests.execution.specs import base_spec

    spec = parse_spec(base_spec(tmp_path))
    assert plan_workers(spec, [{"CPU": 2.0}], cells=10) == (2, 0.0, 1.0)
    assert plan_workers(spec, [{"CPU": 8.0}], cells=3) == (3, 0.0, 1.0)
    assert plan_workers(spec, [{"CPU": 16.0, "GPU": 2.0}], cells=10) == (2, 1.0, 1.0)
    frac = parse_spec(base_spec(tmp_path, resources={"gpus_per_cell": 0.25, "cpus_per_cell": 0.5}))
    assert plan_workers(frac, [{"CPU": 16.0, "GPU": 2.0}], cells=100) == (8, 0.25, 0.5)
    # a CPU-less head (as in cluster.yaml) holds no worker
    assert plan_workers(spec, [{"CPU": 0.0}, {"CPU": 4.0, "GPU": 1.0}], cells=10) == (1, 1.0, 1.0)


def _spec(tmp_path, **resources):
    from sweep.spec.config import parse_spec
    from tests.execution.specs import base_spec

    return parse_spec(base_spec(tmp_path, resources=resources))


def test_workers_are_counted_node_by_node(tmp_path):
    one_gpu_nodes = [{"CPU": 4.0, "GPU": 1.0}] * 3
    # 0.6 GPU: one worker per 1-GPU node, not floor(3 / 0.6) = 5 (two would never be placed)
    assert plan_workers(_spec(tmp_path, gpus_per_cell=0.6), one_gpu_nodes, cells=100) == (3, 0.6, 1.0)
    # the CPUs beside the GPUs bound a node too: 4 CPUs, 3 per cell -> one worker per node
    both = _spec(tmp_path, gpus_per_cell=0.25, cpus_per_cell=3)
    assert plan_workers(both, one_gpu_nodes, cells=100) == (3, 0.25, 3.0)
    assert plan_workers(_spec(tmp_path, cpus_per_cell=3), [{"CPU": 4.0}] * 2, cells=100) == (2, 0.0, 3.0)


@pytest.mark.parametrize(
    ("resources", "nodes", "needles"),
    [
        ({"gpus_per_cell": 2}, [{"CPU": 8.0, "GPU": 1.0}] * 4,
         ["resources.gpus_per_cell", "(got 2.0)", "the largest has 1", "one node"]),
        ({"gpus_per_cell": 1}, [{"CPU": 8.0}], ["resources.gpus_per_cell", "has no GPUs"]),
        ({"cpus_per_cell": 6}, [{"CPU": 4.0}] * 3, ["resources.cpus_per_cell", "(got 6.0)", "only 4"]),
        ({"gpus_per_cell": 1, "cpus_per_cell": 6}, [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 16.0}],
         ["resources.cpus_per_cell", "beside 1 GPU", "only 4"]),
    ],
    ids=["gpus-beyond-any-node", "no-gpus", "cpus-beyond-any-node", "cpus-beside-gpus"],
)  # fmt: skip
def test_a_cell_shape_no_node_can_hold_is_refused(tmp_path, resources, nodes, needles):
    from sweep.errors import SpecError

    with pytest.raises(SpecError) as err:
        plan_workers(_spec(tmp_path, **resources), nodes, cells=10)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_workers_wait_for_nodes_the_autoscaler_can_launch(tmp_path):
    from sweep.execution.node_types import NodeType

    gpu_type = NodeType("gpu_worker", {"CPU": 4.0, "GPU": 1.0}, max_count=3)
    head = {"CPU": 0.0}
    # no GPU up yet: gpus_per_cell defaults to 1 from what can be launched, not to CPUs
    assert plan_workers(_spec(tmp_path), [head], cells=100, launchable=[gpu_type]) == (3, 1.0, 1.0)
    # a live node of that type counts once: 1 up + 2 more the autoscaler may launch
    assert plan_workers(_spec(tmp_path), [head, {"CPU": 4.0, "GPU": 1.0, "memory": 1e9}], cells=100,
                        launchable=[gpu_type]) == (3, 1.0, 1.0)
    frac = _spec(tmp_path, gpus_per_cell=0.5, max_workers=4)
    assert plan_workers(frac, [head], cells=100, launchable=[gpu_type]) == (4, 0.5, 1.0)
    assert plan_workers(_spec(tmp_path), [head], cells=2, launchable=[gpu_type]) == (2, 1.0, 1.0)


@pytest.mark.parametrize(
    ("resources", "needles"),
    [
        ({"gpus_per_cell": 2}, ["resources.gpus_per_cell", "the largest has 1",
                                "the autoscaler can launch gpu_worker (CPU 4, GPU 1) x3"]),
        ({"cpus_per_cell": 8}, ["resources.cpus_per_cell", "beside 1 GPU", "only 4",
                                "the autoscaler can launch gpu_worker (CPU 4, GPU 1) x3"]),
    ],
    ids=["gpus", "cpus"],
)  # fmt: skip
def test_a_shape_no_launchable_node_type_can_hold_is_refused(tmp_path, resources, needles):
    from sweep.errors import SpecError
    from sweep.execution.node_types import NodeType

    gpu_type = NodeType("gpu_worker", {"CPU": 4.0, "GPU": 1.0}, max_count=3)
    with pytest.raises(SpecError) as err:
        plan_workers(_spec(tmp_path, **resources), [{"CPU": 0.0}], cells=10, launchable=[gpu_type])
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_gpus_with_an_autoscaler_that_launches_none_are_refused(tmp_path):
    from sweep.errors import SpecError
    from sweep.execution.node_types import NodeType

    cpu_type = NodeType("cpu_worker", {"CPU": 8.0}, max_count=4)
    with pytest.raises(SpecError, match=r"resources\.gpus_per_cell: the Ray cluster has no GPUs and "
                                        r"its autoscaler launches no GPU node"):
        plan_workers(_spec(tmp_path, gpus_per_cell=1), [{"CPU": 2.0}], cells=10, launchable=[cpu_type])


def test_an_autoscaler_whose_node_types_are_unknown_rules_nothing_out(tmp_path):
    # KubeRay's autoscaler: the driver cannot read its worker groups, so it refuses no
    # shape and asks for resources.max_workers workers (or those of the live nodes)
    head = [{"CPU": 0.0}]
    assert plan_workers(_spec(tmp_path, gpus_per_cell=1, max_workers=6), head, cells=100,
                        unknown_autoscaler=True) == (6, 1.0, 1.0)
    assert plan_workers(_spec(tmp_path, gpus_per_cell=2), head, cells=100, unknown_autoscaler=True) == (1, 2.0, 1.0)
    assert plan_workers(_spec(tmp_path), [{"CPU": 4.0, "GPU": 1.0}] * 2, cells=100,
                        unknown_autoscaler=True) == (2, 1.0, 1.0)
