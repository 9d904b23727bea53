"""Batched, verified adversarial attacks behind one API.

>>> from sweep.attacks import create
>>> atk = create("pgd", norm="linf", steps=20)
>>> out = atk(model, images, labels, eps)        # eps: float or Tensor[B]
>>> out.adv, out.success, out.norm
>>> cur = atk.curve(model, images, labels, [0.01, 0.03, 0.1])
>>> cur.success                                  # BoolTensor[K, B]
"""

from sweep.attacks.base import Attack, AttackResult, CurveResult, eval_mode, predict
from sweep.attacks.registry import (
    UnknownAttackError,
    attack_class,
    attack_params,
    available,
    create,
)

__all__ = [
    "Attack",
    "AttackResult",
    "CurveResult",
    "UnknownAttackError",
    "attack_class",
    "attack_params",
    "available",
    "create",
    "eval_mode",
    "predict",
]
