"""The worker actors of a sweep: a :class:`WorkerPool`, created and owned by its caller.

Workers are :class:`RayCellWorker` actors (a :class:`sweep.execution.worker.CellWorker` that
receives the run's context through Ray's object store), one per GPU (or per
``resources.gpus_per_cell`` fraction of one) when the cluster has GPUs, else one
per ``resources.cpus_per_cell`` CPUs (:func:`sweep.execution.placement.plan_workers`).
Each keeps its models loaded between cells.

The pool holds the Ray connection (:func:`sweep.execution.placement.connect`, made on the
first :meth:`WorkerPool.take`, so no Ray starts when there is nothing to compute)
and the actors; :meth:`WorkerPool.close` (or leaving its ``with`` block) kills them
and stops an embedded Ray it started. ``sweep run`` makes one pool per run
(:func:`sweep.execution.pipeline.run_sweep`). A caller that runs several sweeps in one
Python session (a notebook, a test package) can make one pool with ``keep=True``
and pass it to each run: the workers, with their loaded models, then serve the
next run too, and are killed only when the pool closes.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from sweep.execution.placement import connect, worker_env
from sweep.execution.worker import CellWorker, WorkContext
from sweep.spec.grid import Cell, TransferUnit


class RayCellWorker(CellWorker):
    """The Ray actor: a :class:`CellWorker` that fetches the run's context once per run.

    The context (spec, layout, sweep id) travels as an object-store reference boxed
    in a list (so Ray does not resolve it on every call); the worker resolves it when
    ``ctx_key`` changes. A restarted actor has no context and fetches it again, and one
    actor can serve several runs in a row (a pool with ``keep=True``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._ctx_key: str | None = None
        self._ctx: WorkContext | None = None

    def run_cell(self, ctx_key: str, ctx_box: list[Any], cell: Cell) -> dict[str, Any]:
        return self.run(self._context(ctx_key, ctx_box), cell)

    def run_transfer_unit(
        self, ctx_key: str, ctx_box: list[Any], unit: TransferUnit, source: list[dict[str, Any]] | None
    ) -> dict[str, Any]:
        """:meth:`CellWorker.run_transfer`; ``source`` is passed as the reference of the
        call that computed the source cell (its outcomes, one per cell the call carried),
        so Ray runs this call only once that cell is done."""
        mine = next((o for o in source or () if o.get("cell_id") == unit.source_cell), None)
        return self.run_transfer(self._context(ctx_key, ctx_box), unit, mine)

    def run_cells(self, ctx_key: str, ctx_box: list[Any], cells: list[Cell]) -> list[dict[str, Any]]:
        """Several cells in one call (:meth:`CellWorker.run_group`): one outcome per cell."""
        return self.run_group(self._context(ctx_key, ctx_box), cells)

    def _context(self, ctx_key: str, ctx_box: list[Any]) -> WorkContext:
        if ctx_key != self._ctx_key or self._ctx is None:
            import ray

            self._ctx = ray.get(ctx_box[0])
            self._ctx_key = ctx_key
        return self._ctx

    def node_id(self) -> str:
        """The node Ray placed this worker on; answers once the worker is up."""
        import ray

        return ray.get_runtime_context().get_node_id()


class WorkerPool:
    """Worker actors on one Ray connection; see the module docstring.

    ``address`` / ``num_cpus``: what :func:`sweep.execution.placement.connect` gets (ignored
    when Ray is already running). ``keep``: workers outlive a run, for the next one.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, *, keep: bool = False) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.keep = keep
        self._started = False  # this pool started an embedded Ray: it stops it on close
        self._idle: dict[tuple[Any, ...], list[Any]] = {}  # kept workers, per connection and shape

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embedded(self) -> bool:
        """Whether this pool started the Ray it uses (a local instance: no autoscaler)."""
        return self._started

    def connect(self) -> float:
        """Start or join Ray unless it runs already; returns the seconds it took."""
        t0 = time.perf_counter()
        self._started = connect(self.address, self.num_cpus) or self._started
        return time.perf_counter() - t0

    def take(self, count: int, gpus: float, cpus: float) -> list[Any]:
        """``count`` workers of ``gpus`` GPUs and ``cpus`` CPUs each: kept ones first, then
        new actors. New ones are pending until Ray places them: that is the sweep's demand,
        which Ray's autoscaler launches nodes for."""
        import ray

        self.connect()
        actors = self._idle.pop(self._key(gpus, cpus), [])
        remote = ray.remote(RayCellWorker).options(
            num_cpus=cpus,
            num_gpus=gpus,
            max_restarts=-1,  # a worker lost with its node comes back elsewhere
            max_task_retries=0,  # the dispatcher re-queues cells itself, bounded by `retries`
            scheduling_strategy="SPREAD",
            runtime_env=worker_env(),
        )
        actors += [remote.remote() for _ in range(count - len(actors))]
        self.kill(actors[count:])
        return actors[:count]

    def give_back(self, gpus: float, cpus: float, live: list[Any], gone: list[Any]) -> None:
        """The end of a run: ``live`` workers are kept for the next run (``keep``) or
        killed; ``gone`` ones (lost, withdrawn, released) are killed."""
        self.kill(gone)
        if self.keep:
            self._idle.setdefault(self._key(gpus, cpus), []).extend(live)
        else:
            self.kill(live)

    def kill(self, actors: list[Any]) -> None:
        """Kill ``actors`` for good (no restart); errors of dead ones are ignored."""
        if not actors:
            return
        import ray

        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)

    def close(self) -> None:
        """Kill the kept workers, and stop the embedded Ray this pool started."""
        idle = [a for actors in self._idle.values() for a in actors]
        self._idle.clear()
        if idle and self._ray_up():
            self.kill(idle)
        if self._started:
            self._started = False
            import ray

            ray.shutdown()

    @staticmethod
    def _ray_up() -> bool:
        import ray

        return ray.is_initialized()

    @staticmethod
    def _key(gpus: float, cpus: float) -> tuple[Any, ...]:
        import ray

        ctx = ray.get_runtime_context()
        return (ctx.get_session_name(), ctx.get_job_id(), gpus, cpus, json.dumps(worker_env()))
