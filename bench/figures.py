"""Figures from the benchmarks' JSON files (``--json``): PNGs next to them.

- ``kernels.png``: target 1, time relative to the raw fwd+bwd floor (1.0) for the
  floor + 2 forward passes, ours without and with early stop, and torchattacks,
  per model and variant (fp32 / channels_last / bf16), with the 1.10 target line;
  and, when the per-attack table was run, images/s per attack (ours, floor, peer).
- ``curve.png``: target 2, time of a whole curve relative to the peer's loop, next
  to the irreducible cost (mean robust fraction) and the target (+0.15).

    python bench/figures.py OUT_DIR        # reads OUT_DIR/{kernels,curve}.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def kernels_figure(data: dict[str, Any], path: Path) -> None:
    t1 = data.get("target1", [])
    rows = data.get("rows", [])
    panels = int(bool(t1)) + int(bool(rows))
    if not panels:
        return
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    ax_iter = iter(axes[0])
    if t1:
        ax = next(ax_iter)
        names = ["floor + 2 fwd", "ours, no early stop", "ours, default", "torchattacks"]
        groups = [f"{r['model']}\n{r['variant']}\n{r['floor img/s']:.0f} img/s floor" for r in t1]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs = [g + i * width for g in range(len(t1))]
            ax.bar(xs, [r[f"{name} /floor"] for r in t1], width, label=name)
        ax.axhline(1.0, color="black", lw=1)
        ax.axhline(1.10, color="red", ls="--", lw=1, label="target 1.10")
        ax.set_xticks([g + 0.4 - width / 2 for g in range(len(t1))], groups, fontsize=8)
        ax.set_ylabel("time / raw fwd+bwd floor")
        ax.set_title("target 1: PGD-linf-10")
        ax.legend(fontsize=7)
    if rows:
        ax = next(ax_iter)
        labels = [f"{r['model']}:{r['attack']}" for r in rows]
        ys = range(len(rows))
        for off, key in ((-0.27, "ours img/s"), (0.0, "floor img/s"), (0.27, "peer img/s")):
            ax.barh([y + off for y in ys], [r.get(key) or 0 for r in rows], 0.27, label=key)
        ax.set_yticks(list(ys), labels, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("images / s (log)")
        ax.set_title("per attack: ours vs floor vs torchattacks")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curve_figure(data: dict[str, Any], path: Path) -> None:
    t2 = data.get("target2")
    if not t2:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    timed_rows = [r for r in t2["rows"] if "time/peer" in r]
    ax.bar([r["strategy"].split(" (")[0] for r in timed_rows], [r["time/peer"] for r in timed_rows])
    irr = t2["irreducible"]
    ax.axhline(irr, color="green", ls=":", label=f"irreducible (mean robust) {irr:.2f}")
    ax.axhline(irr + 0.15, color="red", ls="--", label="target: irreducible + 0.15")
    ax.set_ylabel("time / torchattacks loop")
    ax.set_title("target 2: a whole PGD-20 curve over 8 epsilons")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = Path(argv[0])
    for name, draw in (("kernels", kernels_figure), ("curve", curve_figure)):
        src = out / f"{name}.json"
        if src.exists():
            draw(json.loads(src.read_text()), out / f"{name}.png")
            print(f"wrote {out / (name + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
