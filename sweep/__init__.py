"""attack-sweep: distributed adversarial-attack sweeps (models x attacks x epsilons).

The Python face (:mod:`sweep.api`), for notebooks::

    import sweep
    res = sweep.run("spec.yaml")            # a path, YAML text or a dict
    res.rows; res.curves(); res.report("report.html")
    sweep.load("runs/my-sweep").curves()   # later, from the output alone

Names are imported on first use, so ``import sweep`` stays light (no torch, no Ray).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Adversarials", "Results", "SpecError", "SweepFailed", "load", "load_adversarials", "run"]

_EXPORTS = {
    "run": "sweep.api",
    "load": "sweep.api",
    "load_adversarials": "sweep.api",
    "Adversarials": "sweep.api",
    "Results": "sweep.api",
    "SpecError": "sweep.errors",
    "SweepFailed": "sweep.errors",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")
