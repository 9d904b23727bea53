"""A model factory for the cluster tests, named in specs as ``tests.cluster.slow_models:...``.

Fault tests must strike *mid-sweep*: a node removed or a driver killed while cells
are still running. The built-in digits CNN finishes a small cell in milliseconds,
so the whole sweep could end before the fault lands. :class:`SlowModel` is the
trained built-in ``digits-cnn`` (same weights, so the same rows on every node and in
every run) that sleeps a little in each forward pass: cells take a predictable
fraction of a second without making the sweep bigger.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from sweep.models.digits_cnn import load_digits_model

DEFAULT_DELAY_S = 0.02  # per forward pass; a noise cell makes ~10 passes


class SlowModel(nn.Module):
    """``digits-cnn`` plus ``delay_s`` seconds of sleep per forward pass (outputs unchanged)."""

    def __init__(self, delay_s: float = DEFAULT_DELAY_S) -> None:
        super().__init__()
        self.net = load_digits_model("digits-cnn")
        self.delay_s = delay_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay_s)
        return self.net(x)


def slow_digits_cnn(delay_s: float = DEFAULT_DELAY_S) -> nn.Module:
    return SlowModel(delay_s)
