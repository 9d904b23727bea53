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
import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweep import store
from sweep.config import SweepSpec
from sweep.errors import SpecError
from sweep.grid import Cell, DataLayout
from sweep.manifest import DoneRecord, Manifest
from sweep.worker import CellWorker, WorkContext

WAIT_SECONDS = 1.0  # ray.wait timeout: how often the loop checks for stalls
DEFAULT_STALL_SECONDS = 600.0  # no live worker for this long: give up on the rest
MAX_PINGS = 5  # failed pings before a lost worker counts as dead for good


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
    spec: SweepSpec, nodes: Sequence[Mapping[str, float]], cells: int
) -> tuple[int, float, float]:
    """``(workers, gpus_per_worker, cpus_per_worker)`` for the resources of the live ``nodes``.

    A worker lives on one node, so the slots are counted node by node: three 1-GPU
    nodes hold three workers of ``gpus_per_cell: 0.6``, not ``floor(3 / 0.6) = 5``
    (the other two would wait forever to be placed). A cell shape that fits no node
    (``gpus_per_cell: 2`` on 1-GPU nodes) is a :class:`SpecError` naming the key.
    """
    have_gpus = sum(float(n.get("GPU", 0.0)) for n in nodes)
    gpus = spec.resources.gpus_per_cell
    if gpus is None:
        gpus = 1.0 if have_gpus > 0 else 0.0
    cpus = spec.resources.cpus_per_cell
    if gpus > 0 and have_gpus <= 0:
        raise SpecError("resources.gpus_per_cell", gpus, "the Ray cluster has no GPUs")
    slots = sum(_node_slots(n, gpus, cpus) for n in nodes)
    if slots == 0:
        most_gpus = max(float(n.get("GPU", 0.0)) for n in nodes)
        if gpus > most_gpus + 1e-9:
            raise SpecError(
                "resources.gpus_per_cell", gpus,
                f"no node has that many GPUs (the largest has {most_gpus:g}); a cell runs on one node",
            )  # fmt: skip
        fits = [n for n in nodes if float(n.get("GPU", 0.0)) + 1e-9 >= gpus]
        most_cpus = max(float(n.get("CPU", 0.0)) for n in fits)
        beside = f" beside {gpus:g} GPU" if gpus > 0 else ""
        raise SpecError(
            "resources.cpus_per_cell", cpus,
            f"no node has that many CPUs{beside} (the largest has only {most_cpus:g})",
        )  # fmt: skip
    workers = max(1, min(slots, spec.resources.max_workers or slots, cells))
    return workers, gpus, cpus


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
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    keep_workers: bool | None = None,
) -> DriverResult:
    """Compute ``cells`` on Ray; record each finished one in ``manifest``.

    ``on_cell(samples, failed)`` is called once per cell as it finishes or gives up
    (the progress bar). ``keep_workers`` (default: env ``SWEEP_KEEP_WORKERS=1``)
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
        n_workers, gpus, cpus = plan_workers(spec, live_nodes(), len(cells))
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
        actors += [remote.remote() for _ in range(n_workers - len(actors))]
        context = WorkContext(spec=spec, layout=layout, sweep_id=sweep_id)
        ctx = (uuid.uuid4().hex, [ray.put(context)])
        dead = _dispatch(spec, cells, manifest, actors[:n_workers], ctx, result, on_cell, stall_seconds)
        if keep_workers:
            _POOL[key] = [a for i, a in enumerate(actors) if i >= n_workers or not dead[i]]
            actors = [a for i, a in enumerate(actors) if i < n_workers and dead[i]]
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if started:
            ray.shutdown()
    result.wall_seconds = time.perf_counter() - t0
    return result


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
    actors: list[Any],
    ctx: tuple[str, list[Any]],
    result: DriverResult,
    on_cell: Callable[[int, bool], None] | None,
    stall_seconds: float,
) -> list[bool]:
    """The scheduling loop; returns which workers are dead for good."""
    import ray
    from ray.exceptions import GetTimeoutError, RayError, RayTaskError

    n = len(actors)
    cap = spec.resources.cells_in_flight_per_worker
    dispatcher = Dispatcher(n, spec.resources.models_per_worker)
    for cell in cells:
        dispatcher.push(cell)
    inflight: dict[Any, tuple[int, Cell, int]] = {}
    pings: dict[Any, int] = {}
    load = [0] * n
    alive = [True] * n  # False while a restarted worker has not answered its ping
    dead = [False] * n  # its restarts are exhausted or it cannot be created
    ping_failures = [0] * n
    last_alive = time.monotonic()

    def fill() -> None:
        for w in range(n):
            while alive[w] and load[w] < cap and dispatcher.pending:
                item = dispatcher.pop_for(w)
                if item is None:
                    break
                cell, attempt = item
                inflight[actors[w].run_cell.remote(ctx[0], ctx[1], cell)] = (w, cell, attempt)
                load[w] += 1

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

    fill()
    # Pings of restarting workers keep the loop alive only while cells wait for a worker:
    # a worker that cannot come back (its node is gone for good) must not hold up the end.
    while inflight or dispatcher.pending:
        refs = [*inflight, *pings]
        if not refs:  # cells wait, but every worker is dead for good
            break
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            ready, _ = ray.wait(refs, num_returns=1, timeout=WAIT_SECONDS)
        for ref in ready:
            if ref in pings:
                w = pings.pop(ref)
                try:
                    ray.get(ref, timeout=30)
                    alive[w] = True
                except (RayError, GetTimeoutError):
                    # a ping sent while Ray was still noticing the death fails too: ask
                    # again a few times before giving the worker up
                    ping_failures[w] += 1
                    if ping_failures[w] < MAX_PINGS:
                        pings[actors[w].ping.remote()] = w
                    else:
                        dead[w] = True
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
                if alive[w]:
                    alive[w] = False
                    dispatcher.forget(w)
                    pings[actors[w].ping.remote()] = w
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
        if any(alive):
            last_alive = time.monotonic()
        elif all(dead) or time.monotonic() - last_alive > stall_seconds:
            why = "no worker left" if all(dead) else f"no live worker for {stall_seconds:.0f}s"
            for cell, attempt in dispatcher.drain():
                give_up(cell, attempt, f"not run: {why}", "")
            for _, cell, attempt in inflight.values():
                give_up(cell, attempt, f"not finished: {why}", "")
            return [True] * n
        fill()
    for cell, attempt in dispatcher.drain():  # workers all died with cells still queued
        give_up(cell, attempt, "not run: no worker left", "")
    return [d or not a for d, a in zip(dead, alive, strict=True)]
