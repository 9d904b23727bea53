"""Models: the normalising wrapper, built-in digits nets, and the name -> model registry.

The names below are imported on first use (PEP 562): the spec parser reads the
built-ins' recipes (:mod:`sweep.models.recipes`) without pulling in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweep.models.registry import BUILTIN_MODELS, load_model
    from sweep.models.wrapper import NormalizedModel, freeze

__all__ = ["BUILTIN_MODELS", "NormalizedModel", "freeze", "load_model"]

_LAZY = {
    "BUILTIN_MODELS": "sweep.models.registry",
    "load_model": "sweep.models.registry",
    "NormalizedModel": "sweep.models.wrapper",
    "freeze": "sweep.models.wrapper",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sweep.models' has no attribute {name!r}")
