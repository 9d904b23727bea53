"""The in-memory image set every dataset loader returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ImageSet:
    """Images in [0, 1] with labels and stable sample ids.

    Attributes:
        images: ``[N, C, H, W]`` float32 in [0, 1] (normalisation belongs to the model).
        labels: ``[N]`` int64 class indices.
        sample_ids: ``[N]`` int64, a stable index into the source dataset, so a row
            of results can always be traced back to its image.
        num_classes: number of classes the labels range over.
        name: dataset name, for messages.
    """

    images: Tensor
    labels: Tensor
    sample_ids: Tensor
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dim() != 4:
            raise ValueError(f"{self.name}: images must be [N, C, H, W], got {tuple(self.images.shape)}")
        if self.labels.shape != (n,) or self.sample_ids.shape != (n,):
            raise ValueError(f"{self.name}: labels and sample_ids must have shape [{n}]")

    def __len__(self) -> int:
        return self.images.shape[0]

    def take(self, count: int) -> ImageSet:
        """The first ``count`` samples (all of them if there are fewer)."""
        return self.slice(0, count)

    def slice(self, start: int, stop: int) -> ImageSet:
        """Samples ``[start, stop)`` by position."""
        return ImageSet(
            self.images[start:stop],
            self.labels[start:stop],
            self.sample_ids[start:stop],
            self.num_classes,
            self.name,
        )

    def fingerprint(self) -> str:
        """A content hash of the images, labels and sample ids (BLAKE2b, 128 bits, hex):
        the planner hashes each data shard into its cells' ids, and a worker checks the
        shard it loaded against it."""
        h = hashlib.blake2b(digest_size=16)
        for t in (self.images, self.labels, self.sample_ids):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(
            self.images.to(device),
            self.labels.to(device),
            self.sample_ids.to(device),
            self.num_classes,
            self.name,
        )
