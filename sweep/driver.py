"""The driver: the only module that touches Ray. Schedules cells on long-lived workers.

Ray:

- ``address=None`` (the default): a fresh embedded instance, ``ray.init(address=
  "local", num_cpus=...)``. Asking for ``"local"`` explicitly matters: a plain
  ``ray.init()`` follows the ``ray_current_cluster`` file a stopped ``ray start``
  head leaves behind and tries to join a dead cluster (NOTES.md).
- ``address="auto"`` or ``"HOST:PORT"``: join that cluster.
- Already initialised (a test, a notebook, a Ray Job): use it as is, and leave it up.

Workers are :class:`RayCellWorker` actors (a :class:`sweep.worker.CellWorker` that
receives the run's spec through the object store), one per GPU (or per
``resources.gpus_per_cell`` fraction of one) when the cluster has GPUs, else one
per ``resources.cpus_per_cell`` CPUs, spread over the nodes, at most one per cell
to compute. Each keeps its models loaded, so the dispatcher (:class:`Dispatcher`)
sends a cell preferably to a worker that already holds the cell's model, and keeps
at most ``resources.cells_in_flight_per_worker`` cells queued on each worker (one
running, the next ready, so a worker never idles waiting for the driver).

Results stream back as they finish (``ray.wait``). The worker writes the cell's
Parquet file (temp + rename, file named by cell id); the driver records the cell in
the manifest. A cell whose worker raised is re-queued up to ``retries`` times, then
reported with its cell id and error; the others go on. A worker lost with its node
(or killed) restarts (``max_restarts=-1``) and its cells are re-queued; a re-run of
a cell that had in fact finished rewrites the same file with the same rows, so
every row exists exactly once however often a cell runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweep import node_types, store, telemetry
from sweep.config import SweepSpec
from sweep.errors import SpecError
from sweep.grid import Cell, DataLayout
from sweep.manifest import DoneRecord, Manifest
from sweep.node_types import NodeType
from sweep.worker import CellWorker, WorkContext

WAIT_SECONDS = 1.0  # ray.wait timeout: how often the loop checks for stalls
# A lost worker is asked where it is every PING_RETRY_SECONDS until it answers from a
# new node: while Ray has not yet noticed the death (a raylet killed at once takes it
# seconds), or while the actor restarts, such calls fail at once. Asked in vain for
# PING_GIVE_UP_SECONDS, it is given up for good.
PING_RETRY_SECONDS = 1.0
PING_GIVE_UP_SECONDS = 120.0


@dataclass(frozen=True)
class CellFailure:
    cell_id: str
    model: str
    attack: str
    error: str  # one line
    detail: str  # traceback
    attempts: int


@dataclass
class DriverResult:
    computed: int = 0
    samples: int = 0
    failures: list[CellFailure] = field(default_factory=list)
    workers: int = 0
    wall_seconds: float = 0.0
    ray_start_seconds: float = 0.0
    worker_seconds: float = 0.0  # sum over cells of time inside CellWorker.run
    attack_seconds: float = 0.0  # sum over cells of time inside attack.curve
    retries: int = 0
    workers_lost: int = 0
    nodes: int = 0  # distinct nodes the workers were placed on
    first_worker_seconds: float | None = None  # from dispatch start to the first placed worker
    gave_up: str | None = None  # why the remaining cells were not run (no worker placed in time)
    withdrawn: int = 0  # workers never placed, killed once the cells left did not need them
    released: int = 0  # placed workers killed when idle in the tail (their nodes can go)
    disk_full: str | None = None  # set when a write failed for lack of space: dispatch stopped


class Dispatcher:
    """Which cell a free worker gets next (pure Python, no Ray, unit-tested).

    Cells wait in one queue per model. A free worker takes the next cell of the most
    recently used model it holds; if none is pending, the model with the most pending
    cells per worker already holding it (so a big model's cells spread over workers,
    a small one's stay on one). The worker's model LRU is mirrored here (the worker
    runs its calls in the order sent, so the mirror matches).
    """

    def __init__(self, workers: int, models_per_worker: int) -> None:
        self._queues: OrderedDict[str, deque[tuple[Cell, int]]] = OrderedDict()
        self._held: list[OrderedDict[str, None]] = [OrderedDict() for _ in range(workers)]
        self._capacity = models_per_worker
        self.pending = 0

    def push(self, cell: Cell, attempt: int = 0, *, front: bool = False) -> None:
        q = self._queues.setdefault(cell.model, deque())
        (q.appendleft if front else q.append)((cell, attempt))
        self.pending += 1

    def pop_for(self, worker: int) -> tuple[Cell, int] | None:
        if not self.pending:
            return None
        held = self._held[worker]
        model = next((m for m in reversed(held) if self._queues.get(m)), None)
        if model is None:
            holders: dict[str, int] = {}
            for h in self._held:
                for m in h:
                    holders[m] = holders.get(m, 0) + 1
            model = max(
                (m for m, q in self._queues.items() if q),
                key=lambda m: len(self._queues[m]) / (1 + holders.get(m, 0)),
            )
        self.pending -= 1
        held[model] = None
        held.move_to_end(model)
        while len(held) > self._capacity:
            held.popitem(last=False)
        return self._queues[model].popleft()

    def forget(self, worker: int) -> None:
        """A restarted worker lost its caches."""
        self._held[worker].clear()

    def drain(self) -> list[tuple[Cell, int]]:
        out = [item for q in self._queues.values() for item in q]
        self._queues.clear()
        self.pending = 0
        return out


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
    same process is unaffected. Checked with ``ss -ltnp`` (tests/sweep/test_loopback.py).
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
    types the autoscaler can still launch (:mod:`sweep.node_types`; None: none known).

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


class RayCellWorker(CellWorker):
    """The Ray actor: a :class:`CellWorker` that fetches the run's context once per run.

    The context (spec, layout, sweep id) travels as an object-store reference boxed
    in a list (so Ray does not resolve it on every call); the worker resolves it when
    ``ctx_key`` changes. A restarted actor has no context and fetches it again, and one
    actor can serve several runs in a row (see :func:`run_cells`' ``keep_workers``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._ctx_key: str | None = None
        self._ctx: WorkContext | None = None

    def run_cell(self, ctx_key: str, ctx_box: list[Any], cell: Cell) -> dict[str, Any]:
        if ctx_key != self._ctx_key or self._ctx is None:
            import ray

            self._ctx = ray.get(ctx_box[0])
            self._ctx_key = ctx_key
        return self.run(self._ctx, cell)

    def node_id(self) -> str:
        """The node Ray placed this worker on; answers once the worker is up."""
        import ray

        return ray.get_runtime_context().get_node_id()


# Workers kept between runs of one Python session (keep_workers=True), per cluster
# connection and per resource shape.
_POOL: dict[tuple[Any, ...], list[Any]] = {}


def release_workers() -> None:
    """Kill the workers kept between runs (``keep_workers=True``)."""
    import ray

    for actors in _POOL.values():
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
    _POOL.clear()


def _pool_key(gpus: float, cpus: float) -> tuple[Any, ...]:
    import ray

    ctx = ray.get_runtime_context()
    return (ctx.get_session_name(), ctx.get_job_id(), gpus, cpus, json.dumps(worker_env()))


def run_cells(
    spec: SweepSpec,
    layout: DataLayout,
    sweep_id: str,
    cells: Sequence[Cell],
    manifest: Manifest,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    on_cell: Callable[[int, bool], None] | None = None,
    on_pool: Callable[[str], None] | None = None,
    stall_seconds: float | None = None,
    keep_workers: bool | None = None,
) -> DriverResult:
    """Compute ``cells`` on Ray; record each finished one in ``manifest``.

    ``on_cell(samples, failed)`` is called once per cell as it finishes or gives up
    (the progress bar); ``on_pool(text)`` with the worker pool's state when it changes
    ("workers 2 of 3 placed on 2 nodes", "waiting for GPU nodes: ..."). Cells wait
    for a worker at most ``stall_seconds`` (default ``resources.scale_timeout``).
    ``keep_workers`` (default: env ``SWEEP_KEEP_WORKERS=1``)
    keeps the worker actors, with their loaded models, for the next run in this
    Python session when Ray was already running (a notebook, a test module);
    :func:`release_workers` frees them. Returns counts, timings and the failures.
    """
    import ray

    result = DriverResult()
    t0 = time.perf_counter()
    if not cells:
        return result
    if keep_workers is None:
        keep_workers = os.environ.get("SWEEP_KEEP_WORKERS", "") == "1"
    started = connect(address, num_cpus)
    keep_workers = keep_workers and not started
    result.ray_start_seconds = time.perf_counter() - t0
    actors: list[Any] = []
    key: tuple[Any, ...] | None = None
    try:
        types, unknown = launchable_types()
        n_workers, gpus, cpus = plan_workers(spec, live_nodes(), len(cells), types, unknown_autoscaler=unknown)
        result.workers = n_workers
        key = _pool_key(gpus, cpus)
        actors = _POOL.pop(key, []) if keep_workers else []
        remote = ray.remote(RayCellWorker).options(
            num_cpus=cpus,
            num_gpus=gpus,
            max_restarts=-1,  # a worker lost with its node comes back elsewhere
            max_task_retries=0,  # the driver re-queues cells itself, bounded by `retries`
            scheduling_strategy="SPREAD",
            runtime_env=worker_env(),
        )
        # Workers not placed yet are the sweep's demand: Ray's autoscaler launches nodes
        # for pending actors, and each worker takes cells as soon as it is placed.
        actors += [remote.remote() for _ in range(n_workers - len(actors))]
        context = WorkContext(spec=spec, layout=layout, sweep_id=sweep_id)
        ctx = (uuid.uuid4().hex, [ray.put(context)])
        pool = _Pool(actors[:n_workers], _waiting_for(gpus, cpus), gpus, manage=not keep_workers)
        timeout = spec.resources.scale_timeout if stall_seconds is None else stall_seconds
        try:
            _dispatch(spec, cells, manifest, pool, ctx, result, on_cell, on_pool, timeout, sweep_id)
        finally:
            telemetry.record_pool(sweep_id, 0, 0, 0.0)  # the sweep holds nothing any more
        result.nodes = len(pool.nodes_used)
        if keep_workers:
            _POOL[key] = [a for i, a in enumerate(actors) if i >= n_workers or not pool.gone[i]]
            actors = [a for i, a in enumerate(actors) if i < n_workers and pool.gone[i]]
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if started:
            ray.shutdown()
    result.wall_seconds = time.perf_counter() - t0
    return result


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


def _waiting_for(gpus: float, cpus: float) -> str:
    """What a worker waits for, in words: "GPU nodes (1 GPU, 1 CPU per worker)"."""
    each = ", ".join(p for p in (f"{gpus:g} GPU" if gpus else "", f"{cpus:g} CPU" if cpus else "") if p)
    return f"{'GPU' if gpus > 0 else 'CPU'} nodes ({each or 'no resources'} per worker)"


class _Pool:
    """The worker actors of one run and what the driver knows of each.

    A worker is *placed* once it answered ``node_id`` (Ray created it on a node);
    until then it is demand the autoscaler sees. *Gone* workers were killed by the
    driver (demand withdrawn, or idle in the tail) or cannot come back.
    """

    def __init__(self, actors: list[Any], waiting_for: str, gpus: float, *, manage: bool) -> None:
        n = len(actors)
        self.actors = actors
        self.waiting_for = waiting_for
        self.gpus = gpus  # per worker
        self.manage = manage  # withdraw unneeded demand and release idle workers
        self.placed = [False] * n  # up and answering
        self.node: list[str | None] = [None] * n
        self.gone = [False] * n
        self.load = [0] * n
        self.nodes_used: set[str] = set()

    def __len__(self) -> int:
        return len(self.actors)

    def release(self, w: int) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self.actors[w], no_restart=True)
        self.gone[w] = True
        self.placed[w] = False

    def record(self, sweep: str) -> None:
        """Export the pool's size to the Grafana dashboard (:func:`sweep.telemetry.record_pool`)."""
        placed = sum(self.placed)
        waiting = sum(1 for w in range(len(self)) if not self.gone[w] and not self.placed[w])
        telemetry.record_pool(sweep, placed, waiting, placed * self.gpus)

    def state(self) -> str:
        """ "workers 2 of 3 placed on 2 node(s)", or "waiting for GPU nodes (...): 0 of 3 workers placed"."""
        live = [w for w in range(len(self)) if not self.gone[w]]
        placed = [w for w in live if self.placed[w]]
        if not placed:
            return f"waiting for {self.waiting_for}: 0 of {len(live)} workers placed"
        nodes = len({self.node[w] for w in placed})
        text = f"workers {len(placed)} of {len(live)} placed on {nodes} node(s)"
        released = sum(self.gone)
        return text + (f", {released} released" if released else "")
def record_failure(manifest: Manifest, result: DriverResult, cell: Cell, error: str, detail: str) -> None:
    """Log a failed cell in the manifest; on a full disk keep it in memory only (the
    CLI lists every failure anyway) rather than die while reporting it."""
    try:
        manifest.record_failure(cell.cell_id, cell.model, cell.attack, error, detail)
    except OSError as exc:
        if not store.is_disk_full(exc):
            raise
        result.disk_full = result.disk_full or f"{type(exc).__name__}: {exc}"


def stop_on_full_disk(
    dispatcher: Dispatcher,
    result: DriverResult,
    error: str,
    give_up: Callable[[Cell, int, str, str], None],
) -> None:
    """Stop dispatching: every queued cell is reported as not run, the cells already on
    a worker finish (or fail alike). Each further cell would only fail the same way,
    and a re-run resumes once there is space (done cells and whole files are kept)."""
    result.disk_full = result.disk_full or error
    for cell, attempt in dispatcher.drain():
        give_up(cell, attempt, "not run: the disk holding the output is full", "")


def _dispatch(
    spec: SweepSpec,
    cells: Sequence[Cell],
    manifest: Manifest,
    pool: _Pool,
    ctx: tuple[str, list[Any]],
    result: DriverResult,
    on_cell: Callable[[int, bool], None] | None,
    on_pool: Callable[[str], None] | None,
    stall_seconds: float,
    sweep_id: str,
) -> None:
    """The scheduling loop; marks in ``pool.gone`` the workers that cannot be reused."""
    import ray
    from ray.exceptions import GetTimeoutError, RayError, RayTaskError

    n = len(pool)
    actors, load, placed, gone = pool.actors, pool.load, pool.placed, pool.gone
    cap = spec.resources.cells_in_flight_per_worker
    dispatcher = Dispatcher(n, spec.resources.models_per_worker)
    for cell in cells:
        dispatcher.push(cell)
    inflight: dict[Any, tuple[int, Cell, int]] = {}
    # Every worker answers `node_id` once placed: at the start (as nodes join, possibly
    # launched by the autoscaler for these very workers) and after a restart.
    pings: dict[Any, int] = {actors[w].node_id.remote(): w for w in range(n)}
    failing_since: dict[int, float] = {}  # worker -> when its pings began to fail
    reping: dict[int, float] = {}  # worker -> when to ask it again
    t_start = last_placed = time.monotonic()
    shown = ""

    def fill() -> None:
        for w in range(n):
            while placed[w] and load[w] < cap and dispatcher.pending:
                item = dispatcher.pop_for(w)
                if item is None:
                    break
                cell, attempt = item
                inflight[actors[w].run_cell.remote(ctx[0], ctx[1], cell)] = (w, cell, attempt)
                load[w] += 1

    def shrink() -> None:
        """Withdraw the demand the remaining cells no longer need; release idle workers."""
        if not pool.manage:
            return
        # after fill(), cells still pending means every placed worker is full: each
        # pending cell can use one more worker, and no worker is wanted beyond that
        waiting = [w for w in range(n) if not placed[w] and not gone[w] and not load[w]]
        for w in waiting[dispatcher.pending:]:
            _drop_pings(pings, w)
            reping.pop(w, None)
            pool.release(w)
            result.withdrawn += 1
        if not dispatcher.pending:  # the tail: a worker with nothing left frees its node
            for w in range(n):
                if placed[w] and not load[w]:
                    pool.release(w)
                    result.released += 1

    def give_up(cell: Cell, attempt: int, error: str, detail: str) -> None:
        result.failures.append(CellFailure(cell.cell_id, cell.model, cell.attack, error, detail, attempt + 1))
        record_failure(manifest, result, cell, error, detail)
        if on_cell:
            on_cell(0, True)

    def disk_full(cell: Cell, attempt: int, error: str, detail: str) -> None:
        give_up(cell, attempt, error, detail)
        stop_on_full_disk(dispatcher, result, error, give_up)

    def retry(cell: Cell, attempt: int, error: str, detail: str) -> None:
        if attempt < spec.retries:
            result.retries += 1
            dispatcher.push(cell, attempt + 1, front=True)
        else:
            give_up(cell, attempt, error, detail)

    # Pings of unplaced workers keep the loop alive only while cells wait for a worker:
    # a worker that cannot come back (its node is gone for good) must not hold up the end.
    while inflight or dispatcher.pending:
        now = time.monotonic()
        for w in [w for w, at in reping.items() if at <= now]:
            del reping[w]
            pings[actors[w].node_id.remote()] = w
        refs = [*inflight, *pings]
        if not refs and not reping:  # cells wait, but every worker is gone
            break
        if not refs:
            time.sleep(PING_RETRY_SECONDS)
            continue
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            ready, _ = ray.wait(refs, num_returns=1, timeout=WAIT_SECONDS)
        for ref in ready:
            if ref in pings:
                w = pings.pop(ref)
                try:
                    pool.node[w] = ray.get(ref, timeout=30)
                    failing_since.pop(w, None)
                    placed[w] = True
                    pool.nodes_used.add(str(pool.node[w]))
                    if result.first_worker_seconds is None:
                        result.first_worker_seconds = time.monotonic() - t_start
                except (RayError, GetTimeoutError):
                    since = failing_since.setdefault(w, time.monotonic())
                    if gone[w] or time.monotonic() - since > PING_GIVE_UP_SECONDS:
                        gone[w] = True
                    else:
                        reping[w] = time.monotonic() + PING_RETRY_SECONDS
                continue
            w, cell, attempt = inflight.pop(ref)
            load[w] -= 1
            try:
                summary = ray.get(ref, timeout=60)
            except RayTaskError as exc:  # the cell itself raised
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                error = f"{type(cause).__name__}: {cause}".splitlines()[0][:500]
                if store.is_disk_full(cause):  # a retry cannot help, nor can the next cell
                    disk_full(cell, attempt, error, str(exc))
                else:
                    retry(cell, attempt, error, str(exc))
                continue
            except (RayError, GetTimeoutError) as exc:  # the worker (or its node) was lost
                result.workers_lost += 1
                retry(cell, attempt, f"worker lost: {type(exc).__name__}", traceback.format_exc())
                if placed[w]:
                    placed[w] = False
                    dispatcher.forget(w)
                    pings[actors[w].node_id.remote()] = w
                continue
            try:
                manifest.record(DoneRecord(
                    cell_id=summary["cell_id"], file=summary["file"], rows=summary["rows"],
                    bytes=summary["bytes"], seconds=round(summary["seconds"], 4), finished=time.time(),
                ))
            except OSError as exc:
                if not store.is_disk_full(exc):
                    raise
                # the cell's file is whole but unrecorded: a re-run adopts it (sweep.adoption)
                disk_full(cell, attempt, f"finished, but not recorded: {exc}", traceback.format_exc())
                continue
            result.computed += 1
            result.samples += summary["samples"]
            result.worker_seconds += summary["seconds"]
            result.attack_seconds += summary["attack_seconds"]
            if on_cell:
                on_cell(summary["samples"], False)
        now = time.monotonic()
        if any(placed):
            last_placed = now
        elif all(gone) or now - last_placed > stall_seconds:
            if all(gone):
                why = "no worker left"
            elif result.first_worker_seconds is None:
                why = f"no worker placed within resources.scale_timeout ({stall_seconds:g}s): {pool.state()}"
            else:
                why = f"no live worker for {stall_seconds:g}s (resources.scale_timeout)"
            result.gave_up = why
            if on_pool:
                on_pool(why)
            for cell, attempt in dispatcher.drain():
                give_up(cell, attempt, f"not run: {why}", "")
            for _, cell, attempt in inflight.values():
                give_up(cell, attempt, f"not finished: {why}", "")
            gone[:] = [True] * n
            return
        fill()
        shrink()
        text = pool.state()
        if not any(placed):
            text += f" ({now - last_placed:.0f}s of resources.scale_timeout {stall_seconds:g}s)"
        if text != shown:
            shown = text
            pool.record(sweep_id)
            if on_pool:
                on_pool(text)
    for cell, attempt in dispatcher.drain():  # workers all died with cells still queued
        give_up(cell, attempt, "not run: no worker left", "")
    for w in range(n):
        gone[w] = gone[w] or not placed[w]


def _drop_pings(pings: dict[Any, int], w: int) -> None:
    for ref in [r for r, v in pings.items() if v == w]:
        del pings[ref]
