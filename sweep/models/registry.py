"""Model registry: spec entry -> frozen model that takes [0, 1] images and returns logits.

A spec's model entry is a mapping; ``name`` is required and, with nothing else,
names a built-in model. Other sources (torchvision architectures with a local
checkpoint, user factories) are resolved by :func:`load_model` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from sweep.errors import SpecError, did_you_mean
from sweep.models.digits_cnn import RECIPES, load_digits_model

BUILTIN_MODELS: tuple[str, ...] = tuple(RECIPES)


def load_model(entry: Mapping[str, Any], field: str = "model") -> nn.Module:
    """Load the model a spec entry describes, frozen and in eval mode, on the CPU."""
    name = entry.get("name")
    if name in RECIPES and not entry.get("factory") and not entry.get("arch"):
        return load_digits_model(name)
    raise SpecError(f"{field}.name", name, f"unknown model; {did_you_mean(str(name), BUILTIN_MODELS)}")
