"""The training recipes of the built-in models: what determines their weights.

Kept free of torch so that the spec parser can put a built-in model's recipe into
its identity (and so into the cell ids) without importing torch: the built-ins are
trained on first use, so a changed recipe, or another torch version, gives other
weights, and results computed with the old ones must not be resumed as done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything that determines the trained weights (hashed into the cache key)."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    adv_eps: float = 0.0  # > 0: PGD adversarial training at this L-inf budget
    adv_steps: int = 7
    version: int = 2  # bump when the architecture or loop changes (2: one thread)


RECIPES: dict[str, TrainingRecipe] = {
    "digits-cnn": TrainingRecipe(),
    "digits-cnn-at": TrainingRecipe(adv_eps=0.1, epochs=20),
}


def torch_version() -> str:
    """The installed torch's version, read from its metadata (no import)."""
    try:
        return version("torch")
    except PackageNotFoundError:  # a source build without metadata
        import torch

        return str(torch.__version__)


def recipe_identity(name: str) -> dict[str, Any]:
    """What makes built-in ``name``'s weights: its recipe and the torch that trains it."""
    return {**asdict(RECIPES[name]), "torch": torch_version()}
