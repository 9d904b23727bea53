"""The models and batches the benchmarks attack.

- ``digits``: the built-in, trained ``digits-cnn`` (1x8x8 inputs) on the first
  samples of the digits test split: a real model with real robustness, so early
  stop and incremental curves see the survivors a real evaluation sees. Small:
  per-step Python overhead weighs most here.
- ``cnn32``: a 3-conv CNN at 3x32x32 (CIFAR-sized), **random init** (seeded),
  so compute dominates the step and a kernel's overhead shows as a ratio near 1.
  Inputs are seeded uniform noise; labels are the model's own clean predictions,
  so every sample is "correctly classified" and attacked. Speed only: its
  robustness numbers mean nothing.
- ``resnet18``: torchvision's ResNet-18 (10 classes) at 3x32x32, random init
  (seeded), for the GPU script; same inputs and labels as ``cnn32``.

Every model goes through :class:`sweep.models.wrapper.NormalizedModel` and
:func:`~sweep.models.wrapper.freeze`, as the sweep workers use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sweep.data.base import ImageSet
from sweep.models.wrapper import NormalizedModel, freeze

MODELS = ("digits", "cnn32", "resnet18")
SEED = 0


@dataclass(frozen=True)
class Workload:
    """A model and one batch to attack, on ``device``."""

    name: str
    model: nn.Module
    images: Tensor
    labels: Tensor
    trained: bool  # False: random init, figures are for speed only


def build_cnn32(num_classes: int = 10) -> nn.Module:
    """Conv(3->16)-ReLU-Conv(16->32)-ReLU-Pool-Conv(32->64)-ReLU-Pool-FC(4096->128)-ReLU-FC.

    About 10 M multiply-adds per 32x32 image: enough that a batch of 128 spends
    its time in convolutions, small enough for a 2-core CPU.
    """
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def _seeded(builder) -> nn.Module:  # type: ignore[no-untyped-def]
    # parameter init draws from the global RNG: fork it so the benchmark leaves it alone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return builder()


def _random_batch(model: nn.Module, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(SEED)
    images = torch.rand(batch, 3, 32, 32, generator=gen).to(device)
    with torch.no_grad():
        labels = model(images).argmax(1)
    return images, labels


def workload(name: str, batch: int = 128, device: str | torch.device = "cpu") -> Workload:
    """The model ``name`` (one of :data:`MODELS`) and a batch of ``batch`` samples."""
    device = torch.device(device)
    if name == "digits":
        from sweep.data.digits import load_digits_split
        from sweep.models.digits_cnn import load_digits_model

        model = load_digits_model("digits-cnn").to(device)
        data = load_digits_split("test")
        if batch > len(data):
            reps = -(-batch // len(data))
            images = data.images.repeat(reps, 1, 1, 1)[:batch]
            labels = data.labels.repeat(reps)[:batch]
        else:
            images, labels = data.images[:batch], data.labels[:batch]
        return Workload(name, model, images.to(device), labels.to(device), trained=True)
    if name == "cnn32":
        model = freeze(NormalizedModel(_seeded(build_cnn32))).to(device)
    elif name == "resnet18":
        model = freeze(NormalizedModel(resnet18_net())).to(device)
    else:
        raise ValueError(f"unknown benchmark model {name!r}; valid: {', '.join(MODELS)}")
    images, labels = _random_batch(model, batch, device)
    return Workload(name, model, images, labels, trained=False)


# -- factories a sweep spec can name (bench/specs/resnet18.yaml) --------------------------


def resnet18_net(num_classes: int = 10) -> nn.Module:
    """``factory: "bench.nets:resnet18_net"``: torchvision ResNet-18, seeded random init."""
    import torchvision

    return _seeded(lambda: torchvision.models.resnet18(num_classes=num_classes))


def cnn32_net(num_classes: int = 10) -> nn.Module:
    """``factory: "bench.nets:cnn32_net"``: :func:`build_cnn32`, seeded random init."""
    return _seeded(lambda: build_cnn32(num_classes))


def labelled_noise(n: int = 1024, model: str = "resnet18") -> ImageSet:
    """``factory: "bench.nets:labelled_noise"``: ``n`` seeded uniform 3x32x32 images,
    labelled with ``model``'s own (random-init) predictions so every sample is
    "correct" and gets attacked. Speed only; the same on every node (seeded)."""
    builders = {"resnet18": resnet18_net, "cnn32": build_cnn32}
    net = freeze(NormalizedModel(_seeded(builders[model])))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = net.to(device)
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        labels = torch.cat(
            [net(images[i : i + 512].to(device)).argmax(1).cpu() for i in range(0, n, 512)]
        )
    return ImageSet(images, labels, torch.arange(n), 10, f"noise-{model}")
