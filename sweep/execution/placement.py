"""Where a sweep's workers go: the Ray connection, how many workers of which shape the
cluster (live nodes, and node types its autoscaler can launch) can hold, and the
check, before anything is written, that a cell shape fits somewhere at all.

Ray:

- ``address=None`` (the default): a fresh embedded instance, ``ray.init(address=
  "local", num_cpus=...)``. Asking for ``"local"`` explicitly matters: a plain
  ``ray.init()`` follows the ``ray_current_cluster`` file a stopped ``ray start``
  head leaves behind and tries to join a dead cluster (NOTES.md).
- ``address="auto"`` or ``"HOST:PORT"``: join that cluster.
- Already initialised (a test, a notebook, a Ray Job): use it as is, and leave it up.

Waiting for workers to be placed (the autoscaler launching nodes) is bounded by
``resources.scale_timeout``: :mod:`sweep.execution.dispatcher` gives up after it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sweep.errors import SpecError
from sweep.execution import node_types
from sweep.execution.node_types import NodeType
from sweep.spec.config import SweepSpec


def connect(address: str | None, num_cpus: int | None) -> bool:
    """Start or join Ray (see module doc); returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"log_to_driver": False, "runtime_env": worker_env()}
    if address is None:
        with loopback_only():
            ray.init(address="local", num_cpus=num_cpus, dashboard_host="127.0.0.1",
                     _node_ip_address=LOOPBACK, **common)
    else:
        ray.init(address=address, **common)
    return True


LOOPBACK = "127.0.0.1"
_SINGLE_HOST_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While an embedded Ray starts, make every process of it listen on 127.0.0.1 only.

    By default an embedded ``ray.init`` listens on all interfaces: GCS, raylet and
    worker gRPC ports on ``*:PORT``, an agent on ``0.0.0.0``, reachable by anyone on
    the network. Ray's servers bind to loopback when their node IP is 127.0.0.1,
    but ``ray.init`` replaces a loopback ``_node_ip_address`` by the machine's
    routable address unless Ray clusters are off, which is what Ray does on macOS
    and Windows (``ray_constants.ENABLE_RAY_CLUSTER``, read from
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when Ray is imported). So for the start
    of the instance the switch is set both in the environment (inherited by GCS,
    raylet, agents and, through the raylet, every worker) and in the imported
    constant; both are restored after, so a later multi-node ``ray start`` in the
    same process is unaffected. Checked with ``ss -ltnp`` (tests/execution/test_loopback.py).
    """
    from ray._private import ray_constants

    saved_env = os.environ.get(_SINGLE_HOST_VAR)
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_SINGLE_HOST_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_SINGLE_HOST_VAR, None)
        else:
            os.environ[_SINGLE_HOST_VAR] = saved_env


def worker_env() -> dict[str, Any]:
    """Workers import ``module:function`` factories from the driver's CWD, as the CLI does."""
    paths = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def plan_workers(
    spec: SweepSpec,
    nodes: Sequence[Mapping[str, float]],
    cells: int,
    launchable: Sequence[NodeType] | None = None,
    *,
    unknown_autoscaler: bool = False,
) -> tuple[int, float, float]:
    """``(workers, gpus_per_worker, cpus_per_worker)`` for the live ``nodes`` and the node
    types the autoscaler can still launch (:mod:`sweep.execution.node_types`; None: none known).

    A worker lives on one node, so the slots are counted node by node: three 1-GPU
    nodes hold three workers of ``gpus_per_cell: 0.6``, not ``floor(3 / 0.6) = 5``
    (the other two would wait forever to be placed). A launchable type adds its slots
    once per node it may still launch (its ``max_count`` less the live nodes of its
    shape). A cell shape that fits no live node and no launchable type
    (``gpus_per_cell: 2`` on 1-GPU nodes) is a :class:`SpecError` naming the key; one
    that only a launchable type fits is planned, and its workers wait for the nodes.

    ``unknown_autoscaler``: an autoscaler runs whose node types are not readable
    (KubeRay's): nothing can be ruled out, so no shape is refused, and the workers
    are those of the live nodes or ``resources.max_workers``, whichever is more.
    """
    types = list(launchable or ())
    shapes = [*nodes, *(t.resources for t in types)]
    can_launch = f"; the autoscaler can launch {node_types.describe(types)}" if types else ""
    have_gpus = any(float(n.get("GPU", 0.0)) > 0 for n in shapes)
    gpus = spec.resources.gpus_per_cell
    if gpus is None:
        gpus = 1.0 if have_gpus else 0.0
    cpus = spec.resources.cpus_per_cell
    slots = sum(_node_slots(n, gpus, cpus) for n in nodes)
    if unknown_autoscaler:
        slots = max(slots, spec.resources.max_workers or 1)
        return max(1, min(slots, spec.resources.max_workers or slots, cells)), gpus, cpus
    if gpus > 0 and not have_gpus:
        raise SpecError("resources.gpus_per_cell", gpus, "the Ray cluster has no GPUs" + (
            " and its autoscaler launches no GPU node" if launchable is not None else ""))
    for t in types:
        up = sum(1 for n in nodes if _same_shape(n, t.resources))
        slots += _node_slots(t.resources, gpus, cpus) * max(0, t.max_count - up)
    if slots == 0:
        most_gpus = max(float(n.get("GPU", 0.0)) for n in shapes)
        if gpus > most_gpus + 1e-9:
            raise SpecError(
                "resources.gpus_per_cell", gpus,
                f"no node has that many GPUs (the largest has {most_gpus:g}); a cell runs on one node"
                + can_launch,
            )  # fmt: skip
        fits = [n for n in shapes if float(n.get("GPU", 0.0)) + 1e-9 >= gpus]
        most_cpus = max(float(n.get("CPU", 0.0)) for n in fits)
        beside = f" beside {gpus:g} GPU" if gpus > 0 else ""
        raise SpecError(
            "resources.cpus_per_cell", cpus,
            f"no node has that many CPUs{beside} (the largest has only {most_cpus:g})" + can_launch,
        )  # fmt: skip
    workers = max(1, min(slots, spec.resources.max_workers or slots, cells))
    return workers, gpus, cpus


def _same_shape(node: Mapping[str, float], shape: Mapping[str, float]) -> bool:
    """A live node of a launchable type: the same CPUs and GPUs (Ray adds other keys)."""
    return all(float(node.get(k, 0.0)) == float(shape.get(k, 0.0)) for k in ("CPU", "GPU"))


def _node_slots(node: Mapping[str, float], gpus: float, cpus: float) -> int:
    """How many workers of ``gpus`` GPUs and ``cpus`` CPUs fit on one node."""
    have_gpus, have_cpus = float(node.get("GPU", 0.0)), float(node.get("CPU", 0.0))
    if gpus <= 0 and cpus <= 0:
        return max(1, int(have_cpus)) if have_cpus > 0 else 0
    fits = []
    if gpus > 0:
        fits.append(math.floor(have_gpus / gpus + 1e-9))
    if cpus > 0:
        fits.append(math.floor(have_cpus / cpus + 1e-9))
    return min(fits)


def live_nodes() -> list[dict[str, float]]:
    """The resources of each live node of the connected Ray cluster."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def launchable_types() -> tuple[list[NodeType] | None, bool]:
    """The node types the connected cluster's autoscaler can launch (None: none known),
    and whether an autoscaler whose types are unknown runs (see :func:`plan_workers`)."""
    import ray

    types = node_types.launchable(ray.get_runtime_context().gcs_address)
    return types, types is None and node_types.autoscaler_running()


@contextlib.contextmanager
def joined(spec: SweepSpec, address: str | None) -> Iterator[None]:
    """Join the cluster at ``address`` before anything is written, and refuse a cell
    shape that no live node and no node type of its autoscaler can ever hold
    (:class:`SpecError`, so exit 2 with nothing written). Without an address and
    without Ray running, nothing happens here: the embedded instance starts later,
    only when there are cells to compute."""
    ray = sys.modules.get("ray")  # not imported yet: certainly not running (and not worth importing)
    if address is None and (ray is None or not ray.is_initialized()):
        yield
        return
    started = connect(address, None)
    try:
        types, unknown = launchable_types()
        plan_workers(spec, live_nodes(), 1, types, unknown_autoscaler=unknown)
        yield
    finally:
        if started:
            sys.modules["ray"].shutdown()


def waiting_for(gpus: float, cpus: float) -> str:
    """What a worker waits for, in words: "GPU nodes (1 GPU, 1 CPU per worker)"."""
    each = ", ".join(p for p in (f"{gpus:g} GPU" if gpus else "", f"{cpus:g} CPU" if cpus else "") if p)
    return f"{'GPU' if gpus > 0 else 'CPU'} nodes ({each or 'no resources'} per worker)"
