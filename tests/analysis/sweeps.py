"""A small but realistic hand-made sweep for the report, plot and MLflow tests.

Each sample gets a hidden robustness radius per model; an attack fools it at
every epsilon at or above a fraction of that radius (stronger attacks: smaller
fraction), so curves fall monotonically like real incremental curves.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tests.analysis.rows import attack_rows, write_results

LINF = [0.01, 0.02, 0.03, 0.05, 0.1]
L2 = [0.25, 0.5, 1.0]
N = 24


def _codes(radius: np.ndarray, correct: np.ndarray, eps: list[float], strength: float) -> list[str]:
    return [
        "x" * len(eps) if not ok else "".join("R" if e < r * strength else "F" for e in eps)
        for r, ok in zip(radius, correct, strict=True)
    ]


def demo_cells(seed: int = 0) -> list[list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    cells = []
    for model, scale in (("digits-cnn", 0.03), ("digits-cnn-at", 0.09)):
        radius = rng.exponential(scale, N)
        correct = rng.random(N) > 0.08
        labels = [int(v) for v in rng.integers(0, 10, N)]
        for attack, strength in (("fgsm", 1.6), ("pgd", 1.0), ("apgd", 0.95), ("square", 1.2)):
            cells.append(
                attack_rows(model, attack, LINF, _codes(radius, correct, LINF, strength),
                            labels=labels, cell_id=f"{model}-{attack}".replace("-", ""))
            )  # fmt: skip
        mp = [0.0 if not ok else float(r * 1.05) for r, ok in zip(radius, correct, strict=True)]
        mp[3] = math.inf if correct[3] else mp[3]
        cells.append(
            attack_rows(model, "fmn", LINF, kind="minimal", min_perturbation=mp, labels=labels,
                        cell_id=f"{model}fmn".replace("-", ""))
        )  # fmt: skip
        cells.append(
            attack_rows(model, "pgd-l2", L2, _codes(radius * 20, correct, L2, 1.0), name="pgd",
                        norm="l2", labels=labels, cell_id=f"{model}pgdl2".replace("-", ""))
        )  # fmt: skip
    return cells


def write_demo(root: Path) -> Path:
    return write_results(root, *demo_cells())


def write_tiny(root: Path) -> Path:
    """One model, one attack, one epsilon: for tests about the page, not the charts."""
    return write_results(root, attack_rows("tiny-model", "pgd", [0.1], ["R", "F", "x"]))
