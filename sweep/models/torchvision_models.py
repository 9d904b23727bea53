"""torchvision classification architectures by name, built empty for a local checkpoint.

``torchvision.models.get_model(arch, weights=None, num_classes=...)`` builds the
network; attack-sweep never downloads weights (workers may have no internet,
and a download would make a sweep's result depend on when it ran), so the
weights always come from a ``checkpoint`` the user names. torchvision's own
pretrained files are plain state_dicts and load that way too (an error
message says where to get them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from torch import nn

from sweep.errors import SpecError

# torchvision's classifiers default to ImageNet's 1000 classes.
DEFAULT_NUM_CLASSES = 1000

# torchvision's DenseNet weights were saved with keys like "denselayer1.norm.1.weight";
# the current modules call it "norm1". torchvision rewrites them on load
# (torchvision/models/densenet.py, _load_state_dict); so do we.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


@lru_cache(maxsize=1)
def torchvision_architectures() -> tuple[str, ...]:
    """Names of torchvision's image-classification builders (``resnet18``, ``vit_b_16``, ...)."""
    import torchvision.models

    return tuple(torchvision.models.list_models(module=torchvision.models))


def is_torchvision_architecture(name: Any) -> bool:
    return isinstance(name, str) and name in torchvision_architectures()


def build_torchvision(
    arch: str, num_classes: int, kwargs: Mapping[str, Any], kwargs_field: str
) -> nn.Module:
    """An untrained ``arch`` with a ``num_classes``-way head; ``kwargs`` go to its builder."""
    import torchvision.models

    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            kwargs_field, dict(kwargs), f"torchvision's {arch} builder refused them: {exc}"
        ) from exc


def adapt_torchvision_keys(arch: str, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename keys of older torchvision checkpoints to the current module names."""
    if not arch.startswith("densenet"):
        return dict(state_dict)
    renamed = {}
    for key, value in state_dict.items():
        match = _DENSENET_OLD_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def pretrained_hint(arch: str) -> str:
    """Where torchvision's default weights for ``arch`` live, and how they normalise inputs."""
    import torchvision.models

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        preprocess = weights.transforms()
    except Exception:  # an architecture without published weights: no hint
        return ""
    mean = [round(float(m), 3) for m in getattr(preprocess, "mean", [])]
    std = [round(float(s), 3) for s in getattr(preprocess, "std", [])]
    hint = f"torchvision's {weights} weights are {weights.url} (download them yourself"
    if mean and std:
        hint += f"; they expect mean: {mean}, std: {std}"
    return hint + ")"
