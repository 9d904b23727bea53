"""Which samples of a dataset to load: its natural order, or a seeded shuffle; the first few.

The sweep evaluates the first ``samples`` images of a dataset. Loaders ask
:func:`select_positions` which positions those are *before* decoding, so a
50,000-image set only decodes what is used. ``sample_id`` stays the position in
the dataset's natural order whichever order is chosen.

``shuffle_seed`` matters for sources sorted by class (an image folder lists
every image of its first class before the second): the first 100 of those are
one class, and accuracy on them says little. A seeded permutation
(NumPy's PCG64, ``numpy.random.default_rng(seed).permutation``) gives a
class-mixed subset that is the same on every worker and every run, and
prefixes are nested: the first 100 of a 1,000-sample load are the 100-sample load.
"""

from __future__ import annotations

import numpy as np


def select_positions(total: int, limit: int | None, shuffle_seed: int | None) -> np.ndarray:
    """Positions (int64) of the samples to load, in the order they are evaluated.

    ``limit=None`` keeps all ``total``; ``shuffle_seed=None`` keeps natural order.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    if shuffle_seed is None:
        order = np.arange(total, dtype=np.int64)
    else:
        order = np.random.default_rng(shuffle_seed).permutation(total).astype(np.int64)
    return order if limit is None else order[:limit]
