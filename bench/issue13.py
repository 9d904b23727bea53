"""Issue 13's rows in one run: T1, T2, T4, T5 and `sweep plan`, before (docs/BENCHMARKS.md)
and now, with hits and misses.

Runs, one after the other, each in its own process (as a user would), and reads their JSON:

- ``bench/kernels.py`` target 1 only (digits, cnn32): PGD-linf-10 at equal work
  (``early_stop=False``) against the raw fwd+bwd floor, with and without the caller's
  clean predictions (``clean_pred=``: what a sweep's worker hands the attack);
- ``bench/driver.py``: T4, the per-cell overhead of tiny cells (``--cells``, default
  10,000), and `sweep plan` over 100,000 cells (CPU of the command as a user runs it);
- ``bench/curve.py``: T2, the PGD-20 curve over 8 epsilons per strategy against a
  torchattacks loop, next to the irreducible cost (``--skip-minimal``);
- ``bench/e2e.py``: T5, the demo end to end against its kernel time / workers.

    python bench/issue13.py --json out/issue13.json          # ~6-10 min on 2 vCPUs
    python bench/issue13.py --cells 3000 --t1-repeats 3      # quicker
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import load_average, table, verdict, write_json  # noqa: E402

# the figures docs/BENCHMARKS.md gave before issue 13 (2 vCPUs, CPU clock)
BEFORE = {
    "T1": "1.10-1.17",
    "T2": "0.70-0.76 (irreducible 0.64)",
    "T4": "8.6 ms",
    "T5": "40.9%",
    "plan": "5.4-7.0 s CPU",
}
GOALS = {"T1": 1.05, "T2": 0.10, "T4": 2.0, "T5": 0.15, "plan": 2.0}  # T2: above the irreducible


def run(name: str, args: list[str], out: Path, limit: int) -> dict[str, Any] | None:
    """``python bench/<name>.py ARGS --json OUT/<name>.json``; its JSON, or None."""
    path = out / f"{name}.json"
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args, "--json", str(path)]
    print(f"== {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        print(f"!! {name}: over its {limit} s limit")
        return None
    print(f"== {name}: exit {proc.returncode} in {time.perf_counter() - t0:.0f} s", flush=True)
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=10_000, help="T4: tiny cells (bench/driver.py --cells)")
    p.add_argument("--plan-cells", type=int, default=100_000)
    p.add_argument("--t1-repeats", type=int, default=5)
    p.add_argument("--threads", default="1", help="torch threads for T1 and T2 (default 1: a shared machine)")
    p.add_argument("--t2-repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="folder for the scripts' JSON and logs (default: a temp folder)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="issue13-"))
    out.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    t1 = run("kernels", ["--target-models", "digits,cnn32", "--models", "", "--threads", args.threads,
                         "--target-repeats", str(args.t1_repeats)], out, 900)
    t2 = run("curve", ["--skip-minimal", "--threads", args.threads, "--repeats", str(args.t2_repeats)],
             out, 1200)
    driver = run("driver", ["--cells", str(args.cells), "--plan-cells", str(args.plan_cells)], out, 1200)
    e2e = run("e2e", ["--replay", "0"], out, 900)

    rows: list[dict[str, Any]] = []
    for r in (t1 or {}).get("target1", []):
        given = r["ours, no early stop, clean_pred given /floor"]
        rows.append({
            "row": f"T1 PGD-10 equal work / floor, {r['model']}",
            "before": BEFORE["T1"],
            "now": f"{given:.3f} (clean forward again: {r['ours, no early stop /floor']:.3f}; "
                   f"floor + 2 fwd {r['floor + 2 fwd /floor']:.3f})",
            "goal": f"<= {GOALS['T1']}",
            "verdict": verdict(given <= GOALS["T1"]),
        })  # fmt: skip
    for r in ((t2 or {}).get("target2") or {}).get("verdicts", []):
        over = r["ratio - irreducible"]
        rows.append({
            "row": f"T2 PGD-20 curve, 8 eps, digits-cnn, {r['strategy']} / peer loop",
            "before": BEFORE["T2"],
            "now": f"{r['time/peer']:.3f} (irreducible {r['irreducible (mean robust)']:.3f}, "
                   f"+{over:.3f}); never weaker: {r['never weaker']}",
            "goal": f"<= irreducible + {GOALS['T2']}",
            "verdict": verdict(over <= GOALS["T2"] and r["never weaker"].startswith("HIT")),
        })  # fmt: skip
    if driver and "run" in driver:
        r = driver["run"]
        rows.append({
            "row": f"T4 overhead per cell, {r['cells']} tiny cells (CPU, all processes)",
            "before": BEFORE["T4"],
            "now": f"{r['overhead CPU ms/cell']:.2f} ms (wall x workers {r['overhead wall ms/cell']:.2f} ms)",
            "goal": f"<= {GOALS['T4']} ms",
            "verdict": verdict(r["overhead CPU ms/cell"] <= GOALS["T4"]),
        })  # fmt: skip
    if e2e and "run" in e2e:
        r = e2e["run"]
        over = r["overhead vs ideal (excl. ray.init)"]
        rows.append({
            "row": "T5 demo end to end, overhead over kernel time / workers",
            "before": BEFORE["T5"],
            "now": f"{over:.1%} (without worker start-up "
                   f"{r['overhead vs ideal (excl. ray.init + worker start-up)']:.1%})",
            "goal": f"<= {GOALS['T5']:.0%}",
            "verdict": verdict(over <= GOALS["T5"] and not r["failed"]),
        })  # fmt: skip
    if driver and "plan" in driver:
        r = driver["plan"]
        cpu = r["`sweep plan` CPU s"]
        rows.append({
            "row": f"`sweep plan`, {r['cells']} cells",
            "before": BEFORE["plan"],
            "now": f"{cpu:.2f} s CPU ({r['`sweep plan` wall s']:.2f} s wall)",
            "goal": f"<= {GOALS['plan']} s",
            "verdict": verdict(r["exit code"] == 0 and cpu <= GOALS["plan"]),
        })  # fmt: skip
    print()
    print(table(rows, ["row", "before", "now", "goal", "verdict"]))
    load_after = load_average()
    print(f"load average before {load_before}, after {load_after}; scripts' JSON in {out}")
    write_json(args.json, {"rows": rows, "load": [load_before, load_after], "kernels": t1,
                           "curve": t2, "driver": driver, "e2e": e2e})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
