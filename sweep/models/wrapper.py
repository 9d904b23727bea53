"""The model wrapper that owns normalisation, so attacks work in [0, 1] pixel space.

Normalise -> attack -> denormalise round trips lose precision and make epsilon
mean something else; keeping ``(x - mean) / std`` inside the model avoids both.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class NormalizedModel(nn.Module):
    """``logits = net((x - mean) / std)`` for inputs ``x`` ``[B, C, H, W]`` in [0, 1]."""

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        channels = len(mean) if mean is not None else (len(std) if std is not None else 1)
        mean_t = torch.tensor(mean if mean is not None else [0.0] * channels, dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else [1.0] * channels, dtype=torch.float32)
        if bool((std_t <= 0).any()):
            raise ValueError(f"std must be > 0, got {list(std_t.tolist())}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: attacks only ever differentiate inputs."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
