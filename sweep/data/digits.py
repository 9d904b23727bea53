"""scikit-learn's bundled ``digits`` (1,797 images of 8x8, ten classes), as an ImageSet.

It ships inside scikit-learn, so tests and the demo need no download. Images are
``pixel / 16`` (values 0..16 -> [0, 1]) shaped ``[N, 1, 8, 8]``; ``sample_id`` is
the row index in ``sklearn.datasets.load_digits()``.

Splits (fixed, documented, no shuffling): ``train`` = rows 0..898 (899 images),
``test`` = rows 899..1796 (898 images, the default evaluation split),
``all`` = every row.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from sweep.data.base import ImageSet

TRAIN_ROWS = 899
SPLITS = ("train", "test", "all")


@lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return images, bunch.target.astype(np.int64)


def load_digits_split(split: str = "test") -> ImageSet:
    """The ``split`` of digits (``train``, ``test`` or ``all``) as an :class:`ImageSet`."""
    if split not in SPLITS:
        raise ValueError(f"digits split must be one of {SPLITS}, got {split!r}")
    images, labels = _arrays()
    rows = {
        "train": np.arange(0, TRAIN_ROWS),
        "test": np.arange(TRAIN_ROWS, len(labels)),
        "all": np.arange(len(labels)),
    }[split]
    return ImageSet(
        images=torch.from_numpy(images[rows].copy()),
        labels=torch.from_numpy(labels[rows].copy()),
        sample_ids=torch.from_numpy(rows.astype(np.int64)),
        num_classes=10,
        name=f"digits[{split}]",
    )
