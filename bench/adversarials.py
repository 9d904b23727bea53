"""Issue 14: what keeping adversarials costs, in bytes and in time (``python -m bench.adversarials``).

The demo (``sweep/demo/digits.yaml``, 2 models x 6 attacks x 4 shards of 64) under
``adversarials.keep: none`` and the default (``first_n``, ``n: 16``). With
``first_n`` only the cells holding the dataset's first 16 samples store anything:
the 12 cells of shard 0. Those cells are run in this process through
:class:`sweep.execution.worker.CellWorker` (rows, adversarial file, everything a
worker does), both settings interleaved (none, first_n, none, first_n, ...), and
the median of each cell's ``CellWorker.run`` CPU seconds (one thread: on a shared
machine wall time charges other processes' load to whichever contender ran) compared. The other shards'
cells do the same work under both settings (one boolean test), so the demo's
slowdown is the shard-0 extra time over the whole demo's cell time (4 equal shards:
4 x the shard-0 time under ``none``).

Bytes: each stored file's size, per stored adversarial (row) and per cell; and a
synthetic CIFAR-sized cell (3x32x32, uniform noise: incompressible, an upper bound).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.common import print_footer, print_header, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default="sweep/demo/digits.yaml")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print_header("issue 14: stored adversarials", threads=args.threads)

    import sweep.execution.worker as worker_mod
    from sweep.execution.pipeline import prepare
    from sweep.execution.worker import CellWorker, WorkContext
    from sweep.spec.sections import AdversarialSpec

    writing = [0.0]  # CPU seconds inside write_cell_adversarials (the file itself), measured repeats
    original = worker_mod.write_cell_adversarials

    def timed_write(*a, **kw):
        t0 = time.process_time()
        try:
            return original(*a, **kw)
        finally:
            writing[0] += time.process_time() - t0

    worker_mod.write_cell_adversarials = timed_write
    prep = prepare(args.spec)
    shard0 = [c for c in prep.cells if c.shard == 0]
    worker = CellWorker()
    seconds: dict[tuple[str, str], list[float]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-adv-") as tmp:
        for rep in range(args.repeats + 1):  # repeat 0 warms up (model training cache, oneDNN)
            for keep in ("none", "first_n"):
                spec = dataclasses.replace(prep.spec, output=Path(tmp) / keep,
                                           adversarials=AdversarialSpec(keep=keep))
                ctx = WorkContext(spec, prep.layout, prep.sweep_id)
                if rep == 1 and keep == "none":
                    writing[0] = 0.0  # from the first measured repeat on
                for cell in shard0:
                    t0 = time.process_time()
                    out = worker.run(ctx, cell)
                    if rep:  # CPU time of this process (1 thread): the load of others is not charged
                        seconds.setdefault((cell.attack, keep), []).append(time.process_time() - t0)
                    if out.get("adv_file"):
                        rows = pq.read_metadata(Path(tmp) / keep / out["adv_file"]).num_rows
                        sizes[f"{cell.model}/{cell.attack}"] = (out["adv_bytes"], rows)
    rows = []
    tot = {"none": 0.0, "first_n": 0.0}
    for attack in dict.fromkeys(c.attack for c in shard0):
        med = {k: statistics.median(seconds[(attack, k)]) * 2 for k in ("none", "first_n")}  # 2 models
        for k in tot:
            tot[k] += med[k]
        rows.append({"attack": attack, "none s": f"{med['none']:.3f}", "first_n s": f"{med['first_n']:.3f}",
                     "extra s": f"{med['first_n'] - med['none']:+.3f}"})
    print(table(rows))
    extra = tot["first_n"] - tot["none"]
    print(f"shard-0 cells: none {tot['none']:.2f} s, first_n {tot['first_n']:.2f} s, extra {extra:+.2f} s "
          f"({extra / tot['none']:+.1%} on these cells)")
    print(f"demo (4 shards, 4 x {tot['none']:.2f} s): slowdown {extra / (4 * tot['none']):+.2%}")
    write = writing[0] / args.repeats
    print(f"writing the 12 adversarial files (table + Parquet + atomic write): {write:.3f} s per sweep = "
          f"{write / tot['none']:.2%} of the shard-0 cells, {write / (4 * tot['none']):.2%} of the demo")
    per_row = [b / r for b, r in sizes.values()]
    print(table([{"cell": k, "bytes": b, "adversarials": r, "bytes/adversarial": f"{b / r:.0f}"}
                 for k, (b, r) in sorted(sizes.items())]))
    print(f"digits 1x8x8: {statistics.median(per_row):.0f} bytes per stored adversarial (median), "
          f"{statistics.median(b for b, _ in sizes.values()):.0f} bytes per cell (16 samples)")
    synthetic()
    print_footer()


def synthetic() -> None:
    """A CIFAR-sized cell: 16 samples x 5 epsilons of 3x32x32 uniform noise."""
    from sweep.results.adversarials import adv_table, write_adversarials

    rng = np.random.default_rng(0)
    k, b, shape = 5, 16, (3, 32, 32)
    clean = rng.random((b, *shape), dtype=np.float32)
    adv = np.clip(clean[None] + rng.uniform(-0.03, 0.03, (k, b, *shape)).astype(np.float32), 0, 1)
    table_ = adv_table(cell_id="x" * 24, sample_ids=np.arange(b), epsilons=[0, 0.01, 0.02, 0.03, 0.05],
                       labels=np.zeros(b), targets=np.full(b, -1), adv_pred=np.zeros((k, b)),
                       adv=adv, clean=clean, keep="first_n:16")
    with tempfile.TemporaryDirectory() as tmp:
        size = write_adversarials(tmp, "x.parquet", table_)
    raw = adv[0, 0].nbytes
    print(f"CIFAR-sized 3x32x32 (noise, worst case): {size / (k * b):.0f} bytes per stored adversarial "
          f"(raw: float32 image {raw} + its clean copy {raw}), {size} bytes per cell of {b} samples x {k} epsilons")


if __name__ == "__main__":
    main()
