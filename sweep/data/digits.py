"""scikit-learn's bundled ``digits`` (1,797 images of 8x8, ten classes), as an ImageSet.

It ships inside scikit-learn, so tests and the demo need no download. Images are
``pixel / 16`` (values 0..16 -> [0, 1]) shaped ``[N, 1, 8, 8]``; ``sample_id`` is
the row index in ``sklearn.datasets.load_digits()``.

Splits (fixed, documented, no shuffling): ``train`` = rows 0..898 (899 images),
``test`` = rows 899..1796 (898 images, the default evaluation split),
``all`` = every row.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from sweep.data.base import ImageSet
from sweep.data.samples import ArraySet

TRAIN_ROWS = 899
SPLITS = ("train", "test", "all")


def bundled_csv() -> Path:
    """scikit-learn's ``datasets/data/digits.csv.gz``, found without importing sklearn
    (its ``__init__`` costs seconds; ``sweep validate`` should not pay them to read 1,797 rows)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the digits dataset ships with scikit-learn: pip install scikit-learn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


@lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray]:
    # what sklearn.datasets.load_digits() reads: 64 pixel columns, then the label
    rows = np.loadtxt(bundled_csv(), delimiter=",", dtype=np.float32)
    images = (rows[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    return images, rows[:, 64].astype(np.int64)


def load_digits_arrays(split: str = "test") -> ArraySet:
    """The ``split`` of digits (``train``, ``test`` or ``all``) as NumPy arrays."""
    if split not in SPLITS:
        raise ValueError(f"digits split must be one of {SPLITS}, got {split!r}")
    images, labels = _arrays()
    rows = {
        "train": np.arange(0, TRAIN_ROWS),
        "test": np.arange(TRAIN_ROWS, len(labels)),
        "all": np.arange(len(labels)),
    }[split]
    # fancy indexing copies: the cached arrays stay untouched by whoever holds these
    return ArraySet(
        images=images[rows],
        labels=labels[rows],
        sample_ids=rows.astype(np.int64),
        num_classes=10,
        name=f"digits[{split}]",
    )


def load_digits_split(split: str = "test") -> ImageSet:
    """The ``split`` of digits (``train``, ``test`` or ``all``) as an :class:`ImageSet`."""
    return ImageSet.from_arrays(load_digits_arrays(split))
