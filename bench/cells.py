"""A sweep's per-cell device time, through the worker's own path, without Ray (issue 13).

Runs real cells of a spec through :class:`sweep.execution.worker.CellWorker` in this
process, the way a Ray worker runs them (the machine with the GPU has no Ray), twice:
cell by cell (``CellWorker.run``, one call per cell: the pre-issue-13 dispatch) and in
groups of one call each (``CellWorker.run_group`` over
:meth:`sweep.execution.dispatcher.CellQueue.pop_group`: cells of one model and attack
up to ``batch_size`` samples; FGSM / PGD-L-inf without random start run as one batch).
The dispatcher sends such groups for attacks that run as one batch and for cells that
take < 50 ms (``GROUP_BELOW_SECONDS``); here every attack is grouped, so the table also
shows what grouping does to the others (little: they run cell by cell in the call).
For each: wall time per cell, the kernel's share (``attack.curve``) and the rest, and
on CUDA the GPU's utilisation sampled through NVML every 50 ms while the cells run
(``torch.cuda.utilization``; "n/a" without pynvml). Each cell's rows are compared
between the two modes (``cell_seconds`` excluded): they must be identical.

    python bench/cells.py --device cpu                      # digits-cnn, shards of 16
    python bench/cells.py --device cuda --spec bench/specs/resnet18.yaml --shard-size 64
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import print_footer, print_header, table, write_json

DIGITS_SPEC = """
name: bench-cells
seed: 0
output: runs/bench-cells
dataset: {name: digits, split: test, samples: 256, shard_size: 16}
models: [{name: digits-cnn}]
attacks:
  - {name: fgsm}
  - {name: pgd, label: pgd-fixed, norm: linf, steps: 10, random_start: false}
  - {name: pgd, norm: linf, steps: 10}
  - {name: deepfool, norm: l2}
epsilons: {linf: [0.05, 0.1, 0.2], l2: [0.5, 1.0, 2.0]}
batch_size: 256
mlflow: {enabled: false}
"""


class Utilisation:
    """GPU utilisation (%) sampled every ``period`` seconds while the block runs."""

    def __init__(self, device: str, period: float = 0.05) -> None:
        self.device, self.period, self.samples = device, period, []
        self._stop = threading.Event()

    def __enter__(self) -> Utilisation:
        import torch

        if self.device.startswith("cuda"):
            try:
                torch.cuda.utilization()
            except Exception:  # no pynvml: report n/a
                return self
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        import torch

        while not self._stop.wait(self.period):
            self.samples.append(float(torch.cuda.utilization()))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def groups(cells: list[Any], batch_size: int) -> list[list[Any]]:
    """The calls the dispatcher would send one worker (:meth:`CellQueue.pop_group`)."""
    from sweep.execution.dispatcher import MAX_CELLS_PER_CALL, CellQueue

    queue = CellQueue(1, 1)
    for c in cells:
        queue.push(c)
    out = []
    while queue.pending:
        out.append([c for c, _ in queue.pop_group(0, batch_size, MAX_CELLS_PER_CALL)])
    return out


def run_mode(worker: Any, ctx: Any, cells: list[Any], grouped: bool, device: str) -> dict[str, Any]:
    from common import sync

    calls = groups(cells, ctx.spec.batch_size) if grouped else [[c] for c in cells]
    summaries: list[dict[str, Any]] = []
    with Utilisation(device) as util:
        sync(device)
        t0 = time.perf_counter()
        for call in calls:
            summaries += worker.run_group(ctx, call) if grouped else [worker.run(ctx, call[0])]
        sync(device)
        wall = time.perf_counter() - t0
    failed = [s for s in summaries if "error" in s]
    kernel = sum(s.get("attack_seconds", 0.0) for s in summaries)
    n = len(cells)
    return {
        "mode": "grouped (one call per group)" if grouped else "cell by cell",
        "calls": len(calls),
        "cells": n,
        "failed": len(failed),
        "wall ms/cell": 1000 * wall / n,
        "kernel ms/cell": 1000 * kernel / n,
        "non-kernel ms/cell": 1000 * (wall - kernel) / n,
        "GPU util %": "n/a" if util.mean is None else round(util.mean, 1),
        "wall s": wall,
    }


def same_rows(out_a: Path, out_b: Path, cells: list[Any]) -> int:
    """How many cells' rows differ between the two runs (``cell_seconds`` excluded)."""
    import pyarrow.parquet as pq

    from sweep.results import store

    differ = 0
    for c in cells:
        rel = store.shard_relpath(c.model, c.attack, c.cell_id)
        a, b = (pq.read_table(d / rel).drop(["cell_seconds"]).to_pandas() for d in (out_a, out_b))
        differ += not a.equals(b)
    return differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default=None, help="a spec file (default: digits-cnn, 16 shards of 16)")
    p.add_argument("--shard-size", type=int, default=None, help="override dataset.shard_size")
    p.add_argument("--samples", type=int, default=None, help="override dataset.samples")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    info = print_header("bench/cells.py: a sweep's cells through CellWorker, no Ray", args.device, args.threads)
    # the worker times its kernels in wall time (cell_seconds), so this script does too
    print("clock for this script's figures: wall time, whatever the line above says")
    info["clock"] = "wall"

    import torch
    import yaml

    from sweep.execution.pipeline import prepare
    from sweep.execution.worker import CellWorker, WorkContext

    folder = Path(tempfile.mkdtemp(prefix="bench-cells-"))
    try:
        raw = yaml.safe_load(Path(args.spec).read_text() if args.spec else DIGITS_SPEC)
        raw["mlflow"] = {"enabled": False}
        if args.shard_size:
            raw["dataset"]["shard_size"] = args.shard_size
        if args.samples:
            raw["dataset"]["samples"] = args.samples
        raw["output"] = str(folder / "spec-out")
        spec_path = folder / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        prep = prepare(spec_path, probe_models=False)
        print(f"{len(prep.cells)} cells, shard size {prep.spec.dataset.shard_size}, batch {prep.spec.batch_size}")
        rows, outs = [], []
        for grouped in (False, True, False, True):  # interleaved: each mode twice, the first as warm-up
            out = folder / f"out-{len(outs)}"
            ctx = WorkContext(dataclasses.replace(prep.spec, output=out), prep.layout, prep.sweep_id)
            worker = CellWorker()
            worker.device = torch.device(args.device)
            row = run_mode(worker, ctx, list(prep.cells), grouped, args.device)
            outs.append(out)
            if len(outs) > 2:
                rows.append(row)
            print(f"  {row['mode']}: {row['wall ms/cell']:.2f} ms/cell", flush=True)
        differ = same_rows(outs[2], outs[3], list(prep.cells))
        print()
        print(table(rows, ["mode", "calls", "cells", "failed", "wall ms/cell", "kernel ms/cell",
                           "non-kernel ms/cell", "GPU util %"]))
        speed = rows[0]["wall ms/cell"] / rows[1]["wall ms/cell"]
        print(f"\ngrouped vs cell by cell: {speed:.2f}x faster per cell; cells whose rows differ: {differ}")
        info["load_after"] = print_footer()
        write_json(args.json, {"machine": info, "rows": rows, "speed-up": speed, "cells differing": differ})
        return 0 if differ == 0 and not any(r["failed"] for r in rows) else 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
