"""Batched, verified adversarial attacks behind one API.

>>> from sweep.attacks import create
>>> atk = create("pgd", norm="linf", steps=20)
>>> out = atk(model, images, labels, eps)        # eps: float or Tensor[B]
>>> out.adv, out.success, out.norm
>>> cur = atk.curve(model, images, labels, [0.01, 0.03, 0.1])
>>> cur.success                                  # BoolTensor[K, B]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweep.attacks.base import (
        Attack,
        AttackResult,
        CurveResult,
        FixedAttack,
        MinimalAttack,
        eval_mode,
        predict,
    )
    from sweep.attacks.registry import (
        UnknownAttackError,
        attack_class,
        attack_params,
        available,
        create,
    )

# Imported on first use (PEP 562): the registry and catalog need no torch, so
# `import sweep.attacks.registry` (e.g. for `sweep attacks`) must not pull in the kernels.
_LAZY = {
    **dict.fromkeys(["Attack", "AttackResult", "CurveResult", "FixedAttack", "MinimalAttack",
                     "eval_mode", "predict"], "sweep.attacks.base"),
    **dict.fromkeys(["UnknownAttackError", "attack_class", "attack_params", "available",
                     "create"], "sweep.attacks.registry"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sweep.attacks' has no attribute {name!r}")


__all__ = [
    "Attack",
    "AttackResult",
    "CurveResult",
    "FixedAttack",
    "MinimalAttack",
    "UnknownAttackError",
    "attack_class",
    "attack_params",
    "available",
    "create",
    "eval_mode",
    "predict",
]
