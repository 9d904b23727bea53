"""Datasets as in-memory :class:`ImageSet` s with stable sample ids."""

from sweep.data.base import ImageSet
from sweep.data.registry import BUILTIN_DATASETS, load_dataset

__all__ = ["BUILTIN_DATASETS", "ImageSet", "load_dataset"]
