"""Where each cell ran: a test-only worker that notes its node, GPU and actor per cell.

:class:`PlacementRecordingWorker` is :class:`sweep.execution.pool.RayCellWorker` plus a
note before and after each cell, so the real pool, dispatcher and worker code
run unchanged; a test swaps it in for ``sweep.execution.pool.RayCellWorker`` (the pool
looks the class up when it creates its actors). The notes are small JSON files
under ``<output>/_placements/`` (a leading ``_``: Parquet readers skip it), one per
event, named uniquely, so concurrent workers on different nodes never share a file.

The node id and GPU ids come from Ray inside the actor
(``ray.get_runtime_context().get_node_id()``, ``ray.get_gpu_ids()``): what Ray
itself placed, not what the driver asked for.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.execution.pool import RayCellWorker
from sweep.results import atomic
from sweep.spec.grid import Cell

PLACEMENTS_DIR = "_placements"


@dataclass(frozen=True)
class Placement:
    cell_id: str
    phase: str  # "start" (the worker took the cell) or "done" (its file is written)
    node_id: str
    gpu_ids: tuple[str, ...]
    actor_id: str
    pid: int
    time: float


class PlacementRecordingWorker(RayCellWorker):
    """A :class:`RayCellWorker` that notes where each cell starts and finishes (a call
    carries one or more cells: each finished one is noted "done")."""

    def run_cells(self, ctx_key: str, ctx_box: list[Any], cells: list[Cell]) -> list[dict[str, Any]]:
        import ray

        output = Path(ray.get(ctx_box[0], timeout=60).spec.output)
        for cell in cells:
            self._note(output, cell, "start")
        outcomes = super().run_cells(ctx_key, ctx_box, cells)
        for cell, outcome in zip(cells, outcomes, strict=True):
            if "error" not in outcome:
                self._note(output, cell, "done")
        return outcomes

    @staticmethod
    def _note(output: Path, cell: Cell, phase: str) -> None:
        import ray

        ctx = ray.get_runtime_context()
        note = {
            "cell_id": cell.cell_id, "phase": phase, "node_id": ctx.get_node_id(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "actor_id": ctx.get_actor_id(),
            "pid": os.getpid(), "time": time.time(),
        }  # fmt: skip
        name = f"{cell.cell_id}-{phase}-{uuid.uuid4().hex[:8]}.json"
        atomic.write_file(output / PLACEMENTS_DIR / name, json.dumps(note).encode())


def read_placements(output: Path) -> list[Placement]:
    """Every note under ``output/_placements``, oldest first."""
    notes = []
    for path in (Path(output) / PLACEMENTS_DIR).glob("*.json"):
        if atomic.is_temp(path.name):  # a note mid-write (pathlib's glob matches dot files)
            continue
        raw = json.loads(path.read_text())
        notes.append(Placement(**{**raw, "gpu_ids": tuple(raw["gpu_ids"])}))
    return sorted(notes, key=lambda p: p.time)
