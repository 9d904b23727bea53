"""The in-memory image set every dataset loader returns: samples as torch tensors.

torch is imported only where a tensor is made (:meth:`ImageSet.from_arrays`): this
module is imported by code that never needs one (``sweep plan`` reads the layout
from NumPy arrays, :mod:`sweep.data.samples`), and ``import torch`` costs seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sweep.data.samples import ArraySet, SampleSet

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ImageSet(SampleSet["torch.Tensor"]):
    """Images in [0, 1] with labels and stable sample ids, as torch tensors
    (the attributes are :class:`~sweep.data.samples.SampleSet`'s)."""

    @classmethod
    def from_arrays(cls, arrays: ArraySet) -> ImageSet:
        """The same samples as tensors sharing the arrays' memory (dtype and values kept,
        so the fingerprint is the arrays')."""
        import torch

        return cls(
            torch.from_numpy(arrays.images),
            torch.from_numpy(arrays.labels),
            torch.from_numpy(arrays.sample_ids),
            arrays.num_classes,
            arrays.name,
        )

    def host_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(  # type: ignore[return-value]
            t.detach().cpu().contiguous().numpy() for t in (self.images, self.labels, self.sample_ids)
        )

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(
            self.images.to(device),
            self.labels.to(device),
            self.sample_ids.to(device),
            self.num_classes,
            self.name,
        )
