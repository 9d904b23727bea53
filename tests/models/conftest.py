"""Fixtures for the model registry tests: a trained-looking resnet18 and user modules on disk."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from sweep.models.digits_cnn import build_digits_cnn


@pytest.fixture(scope="module")
def resnet18_10() -> nn.Module:
    """A torchvision resnet18 with a 10-way head, fixed random weights, eval mode.

    The BatchNorm running statistics are perturbed too, so a loader that skipped
    buffers (or left the model in train mode) would give different logits.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.resnet18(weights=None, num_classes=10)
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def cifar_batch() -> torch.Tensor:
    """Four 3x32x32 images in [0, 1]."""
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def small_net() -> nn.Module:
    """The digits CNN architecture with fixed random weights (fast stand-in for layout tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_digits_cnn().eval()


@pytest.fixture(scope="module")
def digits_images() -> torch.Tensor:
    """Six 1x8x8 images in [0, 1]."""
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write Python source as a uniquely named module on ``sys.path``; returns its name."""
    folder = tmp_path / "user_code"
    folder.mkdir()

    def write(source: str) -> str:
        name = f"user_mod_{uuid.uuid4().hex[:10]}"
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(folder))  # also invalidates import caches
        return name

    return write
