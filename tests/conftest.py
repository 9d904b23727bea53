"""Shared fixtures: the built-in digits models and a small evaluation batch.

The built-in models train once (seconds) into the user cache
(``$SWEEP_CACHE_DIR``, default ``~/.cache/attack-sweep``) and are reused after.
"""

from __future__ import annotations

import os

# One intra-op thread per process: the suite's models are tiny, and Ray workers
# started by the tests share the same two cores (oversubscribed threads made
# kernels ~10x slower here). Set before torch is imported; Ray workers inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from sweep.data.digits import load_digits_split
from sweep.models.digits_cnn import load_digits_model

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def digits_model() -> torch.nn.Module:
    return load_digits_model("digits-cnn")


@pytest.fixture(scope="session")
def digits_model_at() -> torch.nn.Module:
    return load_digits_model("digits-cnn-at")


@pytest.fixture(scope="session")
def digits_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 32 images of the digits test split and their labels."""
    data = load_digits_split("test").take(32)
    return data.images, data.labels
