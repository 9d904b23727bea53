"""The dispatcher: hands cells to a :class:`~sweep.execution.pool.WorkerPool`'s workers and
collects what they finish. The only module, with :mod:`sweep.execution.pool` and
:mod:`sweep.execution.placement`, that touches Ray.

A :class:`CellQueue` decides which cells a free worker gets next (preferably of a
model it holds; one call carries the cells queued together of one model and attack,
up to ``batch_size`` samples: :meth:`CellQueue.pop_group`) and :func:`run_cells`
keeps at most ``resources.cells_in_flight_per_worker`` calls queued on each worker
(one running, the next ready, so a worker never idles waiting for the driver). The
worker answers one outcome per cell, so a cell that raised is retried alone. What the
dispatcher knows of each worker (placed on which node, cells in flight, gone,
pings) is one :class:`WorkerState`.

Results stream back as they finish (``ray.wait``). The worker writes the cell's
Parquet file itself (:mod:`sweep.results.atomic`, file named by cell id); the
dispatcher records the cell in the manifest. A cell whose worker raised is
re-queued up to ``retries`` times, then reported with its cell id and error; the
others go on. A worker lost with its node (or killed) restarts
(``max_restarts=-1``) and its cells are re-queued; a re-run of a cell that had in
fact finished rewrites the same file with the same rows, so every row exists
exactly once however often a cell runs. On an autoscaling cluster, workers not
placed yet are demand: those the remaining cells no longer need are withdrawn,
and placed workers with nothing left are released, so idle nodes scale down
(pools that keep their workers between runs do neither).

Transfer evaluations (:class:`~sweep.spec.grid.TransferUnit`, ``transfer:``) go
through the same queue to the workers (which cache the target models), each as soon
as its source cell is done: a unit of a source done before this run is queued at
once, the others at the front of the queue when their source cell's result comes back
(a unit is forward passes only), and the call is given the reference of the call that
computed the source, so Ray runs it only once the source is done. A unit travels alone
(one call each), never grouped with cells. No barrier: the other cells go on
meanwhile. A source cell given up takes its units with it.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweep.execution import telemetry
from sweep.execution.placement import launchable_types, live_nodes, plan_workers, waiting_for
from sweep.results import store
from sweep.results.manifest import DoneRecord, Manifest
from sweep.spec.config import SweepSpec
from sweep.spec.grid import Cell, DataLayout, TransferUnit

if TYPE_CHECKING:  # the pool and the worker import torch: `sweep plan` must not pay for it
    from sweep.execution.pool import WorkerPool

WAIT_SECONDS = 1.0  # ray.wait timeout: how often the loop checks for stalls
# A lost worker is asked where it is every PING_RETRY_SECONDS until it answers from a
# new node: while Ray has not yet noticed the death (a raylet killed at once takes it
# seconds), or while the actor restarts, such calls fail at once. Asked in vain for
# PING_GIVE_UP_SECONDS, it is given up for good.
PING_RETRY_SECONDS = 1.0
PING_GIVE_UP_SECONDS = 120.0
# One worker call carries the cells queued together of one model and attack, up to
# batch_size samples and this many cells (per-call Ray cost is ~2-4 ms of CPU here)...
MAX_CELLS_PER_CALL = 256
# ...when their cells are cheap: cells of a pair that took this long or more each (or whose
# first cell has not come back yet) travel alone, since grouping them saves little and
# puts several slow cells behind one worker (the tail); cells an attack runs as one batch
# (worker.batchable_attack) travel together whatever their time: that fills the device.
GROUP_BELOW_SECONDS = 0.05


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
    transfers: int = 0  # transfer evaluations computed (also counted in `computed`)


class CellQueue:
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

    def pop_group(
        self, worker: int, max_samples: int, max_cells: int | Callable[[Cell], int]
    ) -> list[tuple[Cell, int]]:
        """The next cell for ``worker`` (:meth:`pop_for`) and the cells queued right behind
        it of the same model and attack, while they total at most ``max_samples`` samples
        and ``max_cells`` cells (or ``max_cells(first cell)``): what one worker call
        carries (empty when none is pending)."""
        first = self.pop_for(worker)
        if first is None:
            return []
        if not isinstance(first[0], Cell):  # a transfer unit travels alone
            return [first]
        if callable(max_cells):
            max_cells = max_cells(first[0])
        group, samples = [first], first[0].samples
        queue = self._queues[first[0].model]
        while queue and len(group) < max_cells:
            cell = queue[0][0]
            if not isinstance(cell, Cell) or cell.attack != first[0].attack or samples + cell.samples > max_samples:
                break
            group.append(queue.popleft())
            samples += cell.samples
            self.pending -= 1
        return group

    def forget(self, worker: int) -> None:
        """A restarted worker lost its caches."""
        self._held[worker].clear()

    def drain(self) -> list[tuple[Cell, int]]:
        out = [item for q in self._queues.values() for item in q]
        self._queues.clear()
        self.pending = 0
        return out


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
    queue: CellQueue,
    result: DriverResult,
    error: str,
    give_up: Callable[[Cell, int, str, str], None],
) -> None:
    """Stop dispatching: every queued cell is reported as not run, the cells already on
    a worker finish (or fail alike). Each further cell would only fail the same way,
    and a re-run resumes once there is space (done cells and whole files are kept)."""
    result.disk_full = result.disk_full or error
    for cell, attempt in queue.drain():
        give_up(cell, attempt, "not run: the disk holding the output is full", "")


@dataclass
class WorkerState:
    """What the dispatcher knows of one worker actor.

    A worker is *placed* once it answered ``node_id`` (Ray created it on a node);
    until then it is demand the autoscaler sees. A *gone* worker was killed by the
    dispatcher (demand withdrawn, or idle in the tail) or cannot come back.
    """

    actor: Any
    placed: bool = False
    node: str | None = None
    gone: bool = False
    load: int = 0  # calls in flight on it (each carries one or more cells)
    failing_since: float | None = None  # when its pings began to fail
    ping_at: float | None = None  # when to ask it again where it is


def run_cells(
    spec: SweepSpec,
    layout: DataLayout,
    sweep_id: str,
    cells: Sequence[Cell],
    manifest: Manifest,
    pool: WorkerPool,
    *,
    on_cell: Callable[[int, bool], None] | None = None,
    on_pool: Callable[[str], None] | None = None,
    stall_seconds: float | None = None,
    transfers: Sequence[TransferUnit] = (),
) -> DriverResult:
    """Compute ``cells`` on ``pool``'s workers; record each finished one in ``manifest``.

    ``on_cell(samples, failed)`` is called once per cell as it finishes or gives up
    (the progress bar); ``on_pool(text)`` with the worker pool's state when it changes
    ("workers 2 of 3 placed on 2 nodes", "waiting for GPU nodes: ..."). Cells wait
    for a worker at most ``stall_seconds`` (default ``resources.scale_timeout``).
    ``transfers``: the transfer units to evaluate; those whose source cell is in
    ``cells`` wait for it (module docstring), the others run at once.
    Returns counts, timings and the failures.
    """
    import ray

    from sweep.execution.worker import WorkContext

    result = DriverResult()
    t0 = time.perf_counter()
    if not cells and not transfers:
        return result
    result.ray_start_seconds = pool.connect()
    # the actors are requested right after ray.init; an instance this pool started has no
    # autoscaler to ask about (its node-type lookup scans for one: skipped)
    types, unknown = (None, False) if pool.embedded else launchable_types()
    n_workers, gpus, cpus = plan_workers(spec, live_nodes(), len(cells) + len(transfers), types,
                                         unknown_autoscaler=unknown)
    result.workers = n_workers
    workers = [WorkerState(actor) for actor in pool.take(n_workers, gpus, cpus)]
    context = WorkContext(spec=spec, layout=layout, sweep_id=sweep_id)
    run = _Dispatch(
        spec, manifest, pool, workers, result, (uuid.uuid4().hex, [ray.put(context)]),
        waiting_for=waiting_for(gpus, cpus), gpus=gpus, sweep_id=sweep_id,
        on_cell=on_cell, on_pool=on_pool,
        stall_seconds=spec.resources.scale_timeout if stall_seconds is None else stall_seconds,
    )  # fmt: skip
    try:
        run.loop(cells, transfers)
        run.flush()
    except BaseException:
        pool.kill([w.actor for w in workers])
        raise
    finally:
        telemetry.record_pool(sweep_id, 0, 0, 0.0)  # the sweep holds nothing any more
    pool.give_back(gpus, cpus, [w.actor for w in workers if not w.gone], [w.actor for w in workers if w.gone])
    result.nodes = len(run.nodes_used)
    result.wall_seconds = time.perf_counter() - t0
    return result


class _Dispatch:
    """One run's scheduling loop over ``workers``; marks ``gone`` those that cannot be reused."""

    def __init__(
        self,
        spec: SweepSpec,
        manifest: Manifest,
        pool: WorkerPool,
        workers: list[WorkerState],
        result: DriverResult,
        ctx: tuple[str, list[Any]],
        *,
        waiting_for: str,
        gpus: float,
        sweep_id: str,
        on_cell: Callable[[int, bool], None] | None,
        on_pool: Callable[[str], None] | None,
        stall_seconds: float,
    ) -> None:
        self.spec, self.manifest, self.workers, self.result, self.ctx = spec, manifest, workers, result, ctx
        self.pool = pool
        self.manage = not pool.keep  # withdraw unneeded demand and release idle workers
        self.waiting_for, self.gpus, self.sweep_id = waiting_for, gpus, sweep_id
        self.on_cell, self.on_pool, self.stall_seconds = on_cell, on_pool, stall_seconds
        self.queue = CellQueue(len(workers), spec.resources.models_per_worker)
        # ref -> (worker, [(cell or transfer unit, attempt)]): the items one call carries
        self.inflight: dict[Any, tuple[int, list[tuple[Any, int]]]] = {}
        self.waiting: dict[str, list[TransferUnit]] = {}  # source cell id -> its transfer units
        self.source_refs: dict[str, Any] = {}  # source cell id -> the ref of its finished call
        self.pings: dict[Any, int] = {}  # ref of a node_id call -> worker
        self.nodes_used: set[str] = set()
        self.cell_seconds: dict[tuple[str, str], float] = {}  # (model, attack) -> last cell's seconds
        from sweep.execution.worker import batchable_attack

        self.batched = {a.label for a in spec.attacks
                        if batchable_attack(a.name, a.norm, a.params.get("random_start", True))}

    # -- the loop --------------------------------------------------------------------------
    def loop(self, cells: Sequence[Cell], transfers: Sequence[TransferUnit] = ()) -> None:
        import ray

        for cell in cells:
            self.queue.push(cell)
        todo = {c.cell_id for c in cells}
        for unit in transfers:
            if unit.source_cell in todo:
                self.waiting.setdefault(unit.source_cell, []).append(unit)
            else:  # its source was done before this run
                self.queue.push(unit)  # type: ignore[arg-type]
        # Every worker answers `node_id` once placed: at the start (as nodes join, possibly
        # launched by the autoscaler for these very workers) and after a restart.
        for w in range(len(self.workers)):
            self._ping(w)
        t_start = last_placed = time.monotonic()
        shown = ""
        # Pings of unplaced workers keep the loop alive only while cells wait for a worker:
        # a worker that cannot come back (its node is gone for good) must not hold up the end.
        while self.inflight or self.queue.pending:
            now = time.monotonic()
            for w, ws in enumerate(self.workers):
                if ws.ping_at is not None and ws.ping_at <= now:
                    ws.ping_at = None
                    self._ping(w)
            refs = [*self.inflight, *self.pings]
            if not refs and not any(ws.ping_at is not None for ws in self.workers):
                break  # cells wait, but every worker is gone
            if not refs:
                time.sleep(PING_RETRY_SECONDS)
                continue
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            if not ready:
                ready, _ = ray.wait(refs, num_returns=1, timeout=WAIT_SECONDS)
            for ref in ready:
                if ref in self.pings:
                    self._answered(ref, t_start)
                else:
                    self._finished(ref)
            self._flush_due()
            now = time.monotonic()
            if any(ws.placed for ws in self.workers):
                last_placed = now
            elif all(ws.gone for ws in self.workers) or now - last_placed > self.stall_seconds:
                self._give_up_all()
                return
            self._fill()
            self._shrink()
            text = self.state()
            if not any(ws.placed for ws in self.workers):
                text += f" ({now - last_placed:.0f}s of resources.scale_timeout {self.stall_seconds:g}s)"
            if text != shown:
                shown = text
                self._record_pool()
                if self.on_pool:
                    self.on_pool(text)
        for cell, attempt in self.queue.drain():  # workers all died with cells still queued
            self._give_up(cell, attempt, "not run: no worker left", "")
        for ws in self.workers:
            ws.gone = ws.gone or not ws.placed

    def flush(self) -> None:
        """Write the done records still pending (:meth:`sweep.results.manifest.Manifest.close`); on a
        full disk say so, as for any other write: their files are adopted by the next run."""
        try:
            self.manifest.close()
        except OSError as exc:
            if not store.is_disk_full(exc):
                raise
            self.result.disk_full = self.result.disk_full or f"{type(exc).__name__}: {exc}"

    def _flush_due(self) -> None:
        """Records waiting for a segment go out once it is due (:meth:`Manifest.flush_due`);
        on a full disk, dispatching stops as when a shard cannot be written."""
        try:
            self.manifest.flush_due()
        except OSError as exc:
            if not store.is_disk_full(exc):
                raise
            stop_on_full_disk(self.queue, self.result, f"{type(exc).__name__}: {exc}", self._give_up)

    def _ping(self, w: int) -> None:
        self.pings[self.workers[w].actor.node_id.remote()] = w

    def _answered(self, ref: Any, t_start: float) -> None:
        """A worker answered where it is, or its ping failed (not up yet, or lost)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        w = self.pings.pop(ref)
        ws = self.workers[w]
        try:
            ws.node = ray.get(ref, timeout=30)
        except (RayError, GetTimeoutError):
            now = time.monotonic()
            if ws.failing_since is None:
                ws.failing_since = now
            if ws.gone or now - ws.failing_since > PING_GIVE_UP_SECONDS:
                ws.gone = True
            else:
                ws.ping_at = now + PING_RETRY_SECONDS
            return
        ws.failing_since = None
        ws.placed = True
        self.nodes_used.add(str(ws.node))
        if self.result.first_worker_seconds is None:
            self.result.first_worker_seconds = time.monotonic() - t_start

    def _finished(self, ref: Any) -> None:
        """A call came back: each of its cells recorded, retried, or given up."""
        import ray
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError

        w, items = self.inflight.pop(ref)
        ws = self.workers[w]
        ws.load -= 1
        try:
            outcomes = ray.get(ref, timeout=60)
            if isinstance(outcomes, dict):  # a transfer unit's call: one summary
                outcomes = [outcomes]
        except RayTaskError as exc:  # the call itself raised (the worker catches each cell's errors)
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            error = f"{type(cause).__name__}: {cause}".splitlines()[0][:500]
            outcomes = [{"error": error, "detail": str(exc), "disk_full": store.is_disk_full(cause)}] * len(items)
        except (RayError, GetTimeoutError) as exc:  # the worker (or its node) was lost
            self.result.workers_lost += 1
            for cell, attempt in items:
                self._retry(cell, attempt, f"worker lost: {type(exc).__name__}", traceback.format_exc())
            if ws.placed:
                ws.placed = False
                self.queue.forget(w)
                self._ping(w)
            return
        for (cell, attempt), outcome in zip(items, outcomes, strict=True):
            self._outcome(cell, attempt, outcome, ref)

    def _outcome(self, cell: Cell, attempt: int, summary: dict[str, Any], ref: Any) -> None:
        """One cell's outcome: its summary recorded, or its error retried (this cell alone).
        ``ref``: the call's result, which the cell's transfer units are given."""
        if "error" in summary:
            if summary["disk_full"]:  # a retry cannot help, nor can the next cell
                self._disk_full(cell, attempt, summary["error"], summary["detail"])
            else:
                self._retry(cell, attempt, summary["error"], summary["detail"])
            return
        try:
            self.manifest.record(DoneRecord.from_summary(summary, time.time()))
        except OSError as exc:
            if not store.is_disk_full(exc):
                raise
            # the cell's file is whole but unrecorded: a re-run adopts it (sweep.execution.adoption)
            self._disk_full(cell, attempt, f"finished, but not recorded: {exc}", traceback.format_exc())
            return
        r = self.result
        r.computed += 1
        if isinstance(cell, TransferUnit):
            r.transfers += 1
            if self.on_cell:
                self.on_cell(0, False)
            return
        self.cell_seconds[(cell.model, cell.attack)] = summary["seconds"]
        for unit in self.waiting.pop(cell.cell_id, []):  # its transfer evaluations can start:
            self.source_refs[cell.cell_id] = ref  # first (forward passes only, the file just written)
            self.queue.push(unit, front=True)  # type: ignore[arg-type]
        r.samples += summary["samples"]
        r.worker_seconds += summary["seconds"]
        r.attack_seconds += summary["attack_seconds"]
        if self.on_cell:
            self.on_cell(summary["samples"], False)

    def _give_up_all(self) -> None:
        """No worker placed (or left) for too long: every cell not done is reported."""
        if all(ws.gone for ws in self.workers):
            why = "no worker left"
        elif self.result.first_worker_seconds is None:
            why = f"no worker placed within resources.scale_timeout ({self.stall_seconds:g}s): {self.state()}"
        else:
            why = f"no live worker for {self.stall_seconds:g}s (resources.scale_timeout)"
        self.result.gave_up = why
        if self.on_pool:
            self.on_pool(why)
        for cell, attempt in self.queue.drain():
            self._give_up(cell, attempt, f"not run: {why}", "")
        for _, items in self.inflight.values():
            for cell, attempt in items:
                self._give_up(cell, attempt, f"not finished: {why}", "")
        for ws in self.workers:
            ws.gone = True

    # -- handing out cells, and letting workers go ----------------------------------------
    def _fill(self) -> None:
        cap = self.spec.resources.cells_in_flight_per_worker
        live = max(1, sum(not ws.gone for ws in self.workers))
        for w, ws in enumerate(self.workers):
            while ws.placed and ws.load < cap and self.queue.pending:
                # small cells travel together, up to one batch of samples; never more than
                # a fair share of what is left, so the tail stays spread over the workers
                share = max(1, min(MAX_CELLS_PER_CALL, self.queue.pending // (cap * live)))
                items = self.queue.pop_group(w, self.spec.batch_size, lambda c, share=share: (
                    share if c.attack in self.batched
                    or self.cell_seconds.get((c.model, c.attack), 1.0) < GROUP_BELOW_SECONDS else 1))
                if not items:
                    break
                first = items[0][0]
                if isinstance(first, TransferUnit):  # alone in its call (pop_group)
                    # the source's call ref as an argument: Ray starts this call once it is done
                    ref = ws.actor.run_transfer_unit.remote(
                        self.ctx[0], self.ctx[1], first, self.source_refs.get(first.source_cell))
                else:
                    ref = ws.actor.run_cells.remote(self.ctx[0], self.ctx[1], [cell for cell, _ in items])
                self.inflight[ref] = (w, items)
                ws.load += 1

    def _shrink(self) -> None:
        """Withdraw the demand the remaining cells no longer need; release idle workers."""
        if not self.manage:
            return
        # after _fill(), cells still pending means every placed worker is full: each
        # pending cell can use one more worker, and no worker is wanted beyond that
        waiting = [w for w, ws in enumerate(self.workers) if not ws.placed and not ws.gone and not ws.load]
        for w in waiting[self.queue.pending :]:
            for ref in [r for r, v in self.pings.items() if v == w]:
                del self.pings[ref]
            self.workers[w].ping_at = None
            self._release(w)
            self.result.withdrawn += 1
        if not self.queue.pending:  # the tail: a worker with nothing left frees its node
            for w, ws in enumerate(self.workers):
                if ws.placed and not ws.load:
                    self._release(w)
                    self.result.released += 1

    def _release(self, w: int) -> None:
        ws = self.workers[w]
        self.pool.kill([ws.actor])
        ws.gone = True
        ws.placed = False

    # -- cells that did not finish ---------------------------------------------------------
    def _give_up(self, cell: Cell, attempt: int, error: str, detail: str) -> None:
        self.result.failures.append(
            CellFailure(cell.cell_id, cell.model, cell.attack, error, detail, attempt + 1))
        record_failure(self.manifest, self.result, cell, error, detail)
        if self.on_cell:
            self.on_cell(0, True)
        for unit in self.waiting.pop(cell.cell_id, []):  # no adversarials to transfer
            self._give_up(unit, 0, f"not run: its source cell {cell.cell_id} failed", "")  # type: ignore[arg-type]

    def _disk_full(self, cell: Cell, attempt: int, error: str, detail: str) -> None:
        self._give_up(cell, attempt, error, detail)
        stop_on_full_disk(self.queue, self.result, error, self._give_up)

    def _retry(self, cell: Cell, attempt: int, error: str, detail: str) -> None:
        if attempt < self.spec.retries:
            self.result.retries += 1
            self.queue.push(cell, attempt + 1, front=True)
        else:
            self._give_up(cell, attempt, error, detail)

    # -- the pool's state, for people and the dashboard ------------------------------------
    def _record_pool(self) -> None:
        """Export the pool's size to the Grafana dashboard (:func:`sweep.execution.telemetry.record_pool`)."""
        placed = sum(ws.placed for ws in self.workers)
        waiting = sum(1 for ws in self.workers if not ws.gone and not ws.placed)
        telemetry.record_pool(self.sweep_id, placed, waiting, placed * self.gpus)

    def state(self) -> str:
        """ "workers 2 of 3 placed on 2 node(s)", or "waiting for GPU nodes (...): 0 of 3 workers placed"."""
        live = [ws for ws in self.workers if not ws.gone]
        placed = [ws for ws in live if ws.placed]
        if not placed:
            return f"waiting for {self.waiting_for}: 0 of {len(live)} workers placed"
        nodes = len({ws.node for ws in placed})
        text = f"workers {len(placed)} of {len(live)} placed on {nodes} node(s)"
        released = sum(ws.gone for ws in self.workers)
        return text + (f", {released} released" if released else "")
