"""What every in-memory sample set shares, and :class:`ArraySet`, the one held in NumPy arrays.

Loaders that read array files (digits, CIFAR's batches, MNIST's IDX files) build an
:class:`ArraySet`; :class:`sweep.data.base.ImageSet` is the same samples as torch
tensors, what models and attacks take. ``sweep plan`` and ``sweep validate`` only need
the data layout (sample count, class count, one content fingerprint per shard), so
they keep the arrays and never import torch (about two seconds of CPU).

The fingerprint is the same function of the same bytes for both kinds: an ImageSet
made from an ArraySet (``torch.from_numpy``, which keeps dtype and values) hashes
to the same digest, which is what lets the planner hash arrays while a worker
checks the tensors it loaded against that digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

import numpy as np

A = TypeVar("A")  # the array type: np.ndarray or torch.Tensor


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """BLAKE2b (128 bits, hex) of the arrays' bytes in C order, one after the other."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(a.tobytes())  # tobytes() is C order whatever the array's strides
    return h.hexdigest()


@dataclass(frozen=True)
class SampleSet(Generic[A]):
    """Images in [0, 1] with labels and stable sample ids.

    Attributes:
        images: ``[N, C, H, W]`` float32 in [0, 1] (normalisation belongs to the model).
        labels: ``[N]`` int64 class indices.
        sample_ids: ``[N]`` int64, a stable index into the source dataset, so a row
            of results can always be traced back to its image.
        num_classes: number of classes the labels range over.
        name: dataset name, for messages.
    """

    images: A
    labels: A
    sample_ids: A
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        images: Any = self.images  # shape and ndim: the same on arrays and tensors
        n = images.shape[0]
        if images.ndim != 4:
            raise ValueError(f"{self.name}: images must be [N, C, H, W], got {tuple(images.shape)}")
        if self.labels.shape != (n,) or self.sample_ids.shape != (n,):  # type: ignore[attr-defined]
            raise ValueError(f"{self.name}: labels and sample_ids must have shape [{n}]")

    def __len__(self) -> int:
        return int(self.images.shape[0])  # type: ignore[attr-defined]

    def take(self, count: int) -> Self:
        """The first ``count`` samples (all of them if there are fewer)."""
        return self.slice(0, count)

    def slice(self, start: int, stop: int) -> Self:
        """Samples ``[start, stop)`` by position."""
        return dataclasses.replace(
            self,
            images=self.images[start:stop],  # type: ignore[index]
            labels=self.labels[start:stop],  # type: ignore[index]
            sample_ids=self.sample_ids[start:stop],  # type: ignore[index]
        )

    def host_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Images, labels and sample ids as NumPy arrays in host memory."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A content hash of the images, labels and sample ids (BLAKE2b, 128 bits, hex):
        the planner hashes each data shard into its cells' ids, and a worker checks the
        shard it loaded against it."""
        return fingerprint_arrays(*self.host_arrays())


@dataclass(frozen=True)
class ArraySet(SampleSet[np.ndarray]):
    """A :class:`SampleSet` of NumPy arrays (float32 images, int64 labels and ids)."""

    def host_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.images, self.labels, self.sample_ids

    def subset(self, positions: np.ndarray, name: str | None = None) -> ArraySet:
        """The samples at ``positions`` (int64), in that order (a copy)."""
        return ArraySet(
            self.images[positions],
            self.labels[positions],
            self.sample_ids[positions],
            self.num_classes,
            name or self.name,
        )
