"""Dataset registry: spec entry -> :class:`~sweep.data.base.ImageSet`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweep.data.base import ImageSet
from sweep.data.digits import SPLITS, load_digits_split
from sweep.errors import SpecError, did_you_mean

BUILTIN_DATASETS: tuple[str, ...] = ("digits",)


def load_dataset(entry: Mapping[str, Any], field: str = "dataset") -> ImageSet:
    """Load the dataset a spec entry describes (all of its evaluation split)."""
    name = entry.get("name")
    if name == "digits" and not entry.get("factory"):
        split = entry.get("split", "test")
        if split not in SPLITS:
            raise SpecError(f"{field}.split", split, f"valid: {', '.join(SPLITS)}")
        return load_digits_split(split)
    raise SpecError(f"{field}.name", name, f"unknown dataset; {did_you_mean(str(name), BUILTIN_DATASETS)}")
