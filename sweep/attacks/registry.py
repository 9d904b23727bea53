"""Attack registry: an explicit name -> class table, imported lazily.

The table is the single list of attacks (no import-time side effects, no star
imports). A new attack is one module plus one line here; the registry-parametrised
tests pick it up with no test edits.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sweep.errors import did_you_mean

if TYPE_CHECKING:  # the table itself needs no torch: `sweep attacks` lists without it
    from sweep.attacks.base import Attack

_ATTACKS: dict[str, str] = {
    "fgsm": "sweep.attacks.pgd:FGSM",
    "pgd": "sweep.attacks.pgd:PGD",
    "apgd": "sweep.attacks.apgd:APGD",
    "apgd-t": "sweep.attacks.apgd:APGDT",
    "cw": "sweep.attacks.cw:CarliniWagnerL2",
    "deepfool": "sweep.attacks.deepfool:DeepFool",
    "fmn": "sweep.attacks.fmn:FMN",
    "fab": "sweep.attacks.fab:FAB",
    "fab-t": "sweep.attacks.fab:FABT",
    "square": "sweep.attacks.square:Square",
    "onepixel": "sweep.attacks.onepixel:OnePixel",
    "lbfgs": "sweep.attacks.lbfgs:LBFGS",
    "noise": "sweep.attacks.noise:Noise",
    "cascade": "sweep.attacks.cascade:Cascade",
    "autoattack": "sweep.attacks.autoattack:AutoAttack",
}


class UnknownAttackError(ValueError):
    """An attack name or parameter that does not exist; the message says what does."""


def available() -> list[str]:
    """All registered attack names, sorted."""
    return sorted(_ATTACKS)


def location(name: str) -> tuple[str, str]:
    """``(module, class name)`` registered under ``name``; raises :class:`UnknownAttackError`."""
    if name not in _ATTACKS:
        raise UnknownAttackError(f"unknown attack {name!r}; {did_you_mean(name, _ATTACKS)}")
    module_name, _, class_name = _ATTACKS[name].partition(":")
    return module_name, class_name


def attack_class(name: str) -> type[Attack]:
    """The class registered under ``name``; raises :class:`UnknownAttackError`."""
    module_name, class_name = location(name)
    return getattr(importlib.import_module(module_name), class_name)


def attack_params(name: str) -> dict[str, Any]:
    """Hyper-parameters of attack ``name`` with their defaults (``norm`` included)."""
    sig = inspect.signature(attack_class(name).__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def create(name: str, **params: Any) -> Attack:
    """Build attack ``name`` with hyper-parameters ``params``.

    >>> atk = create("pgd", norm="linf", steps=20)

    Unknown names or parameters raise :class:`UnknownAttackError` listing the valid ones.
    """
    cls = attack_class(name)
    unknown_params(name, params, attack_params(name))
    return cls(**params)


def unknown_params(name: str, params: Mapping[str, Any], valid: Mapping[str, Any]) -> None:
    """Raise :class:`UnknownAttackError` for the first of ``params`` not in ``valid``."""
    for key in params:
        if key not in valid:
            raise UnknownAttackError(
                f"attack {name!r} has no parameter {key!r}; {did_you_mean(key, valid)}"
            )
