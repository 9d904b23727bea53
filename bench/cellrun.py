"""Run cells in this process through :class:`sweep.execution.worker.CellWorker`, phase by phase.

:func:`cell_runner` copes with either calling convention of ``CellWorker``
(``CellWorker(spec, layout, sweep_id).run(cell)`` or ``CellWorker().run(
WorkContext(spec, layout, sweep_id), cell)``): the pipeline was being reworked while
these benchmarks were written. :func:`replay_phases` times the phases of
``CellWorker.run`` by wrapping the functions it calls (from outside: nothing in
``sweep/`` changes), which a Ray run can only report as one number per cell.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def cell_runner(prep: Any, output: Path | None = None) -> Callable[[Any], dict[str, Any]]:
    """``run(cell)`` for the prepared sweep ``prep``, writing under ``output`` if given."""
    import sweep.execution.worker as worker

    spec = prep.spec if output is None else dataclasses.replace(prep.spec, output=output)
    if hasattr(worker, "WorkContext"):
        w = worker.CellWorker()
        ctx = worker.WorkContext(spec, prep.layout, prep.sweep_id)
        return lambda cell: w.run(ctx, cell)
    return worker.CellWorker(spec, prep.layout, prep.sweep_id).run


def _phases() -> dict[tuple[Any, str], str]:
    import sweep.execution.worker as worker
    import sweep.results.store as store

    return {
        (worker, "load_net"): "model load",
        (worker, "load_data"): "dataset load",
        (worker, "run_curve"): "kernel (attack.curve)",
        (worker, "rows_table"): "row table (Arrow)",
        (store, "write_shard"): "Parquet write (atomic)",
        (worker, "clean_logits"): "clean logits check",
        (worker.CellWorker, "_shard"): "shard (slice, fingerprint, to device)",
        (worker.telemetry, "record_cell"): "telemetry",
    }


def replay_phases(
    prep: Any,
    cells: Sequence[Any],
    *,
    output: Path | None = None,
    warmup: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> list[dict[str, Any]]:
    """Run ``warmup`` then ``cells`` in-process; seconds per phase over ``cells`` only.

    Rows: phase, calls, seconds, share of ``CellWorker.run`` time; the last row is
    what ``run`` spent outside the wrapped phases. ``clock``: ``time.perf_counter``
    (wall) or ``time.process_time`` (this process's CPU).
    """
    timers: dict[str, list[float]] = defaultdict(list)
    phases = _phases()
    saved = {key: getattr(*key) for key in phases}

    def timing(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                timers[name].append(clock() - t0)

        return wrapper

    try:
        for (owner, attr), name in phases.items():
            setattr(owner, attr, timing(name, getattr(owner, attr)))
        run = cell_runner(prep, output)
        warm = list(prep.cells[:warmup]) if warmup else []
        for c in warm:
            run(c)
        timers.clear()
        t0 = clock()
        for c in cells:
            run(c)
        total = clock() - t0
    finally:
        for (owner, attr), fn in saved.items():
            setattr(owner, attr, fn)
    rows = []
    # _shard calls load_data on the first cell: report the shard phase net of it
    net_shard = sum(timers["shard (slice, fingerprint, to device)"]) - sum(timers["dataset load"])
    for name in phases.values():
        s = net_shard if name.startswith("shard") else sum(timers[name])
        rows.append(
            {
                "phase": name,
                "calls": len(timers[name]),
                "seconds": s,
                "share of cell time": s / total if total else float("nan"),
            }
        )
    rest = total - sum(r["seconds"] for r in rows)
    rows.append(
        {
            "phase": "rest of CellWorker.run",
            "calls": len(cells),
            "seconds": rest,
            "share of cell time": rest / total if total else float("nan"),
        }
    )
    rows.append(
        {"phase": "total", "calls": len(cells), "seconds": total, "share of cell time": 1.0}
    )
    return rows
