"""Built-in reference models for the ``digits`` dataset, trained on first use and cached.

- ``digits-cnn``: a small conv net trained normally (about 97% test accuracy).
- ``digits-cnn-at``: the same net trained adversarially with PGD-L-inf
  (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial
  Attacks", arXiv:1706.06083): eps 0.1, 7 steps of 2.5 * eps / 7, random start.

Training is deterministic (a seeded ``torch.Generator`` for init and shuffling,
CPU, no global RNG), takes seconds on a CPU, and writes the weights to
``$SWEEP_CACHE_DIR`` (default ``~/.cache/attack-sweep``) via a temp file and a
rename, so several Ray workers training at once cannot corrupt the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from sweep.data.digits import load_digits_split
from sweep.models.wrapper import NormalizedModel, freeze


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything that determines the trained weights (hashed into the cache key)."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    adv_eps: float = 0.0  # > 0: PGD adversarial training at this L-inf budget
    adv_steps: int = 7
    version: int = 1  # bump when the architecture or loop changes


RECIPES: dict[str, TrainingRecipe] = {
    "digits-cnn": TrainingRecipe(),
    "digits-cnn-at": TrainingRecipe(adv_eps=0.1),
}


def build_digits_cnn(num_classes: int = 10) -> nn.Module:
    """Conv(1->32) - ReLU - Conv(32->64) - ReLU - MaxPool - FC(1024->128) - ReLU - FC(->10)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def cache_dir() -> Path:
    return Path(os.environ.get("SWEEP_CACHE_DIR", Path.home() / ".cache" / "attack-sweep"))


def _cache_path(name: str, recipe: TrainingRecipe) -> Path:
    key = json.dumps({"name": name, **asdict(recipe), "torch": torch.__version__}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{name}-{digest}.pt"


def _pgd_linf_train(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int,
                    gen: torch.Generator) -> Tensor:
    # A training-time PGD (Madry et al.): it runs in train mode inside the training
    # loop, so it does not go through the verified attack API that evaluation uses.
    step = 2.5 * eps / steps
    adv = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def train_digits_cnn(recipe: TrainingRecipe) -> nn.Module:
    """Train the digits CNN per ``recipe`` on the ``train`` split; returns the bare net."""
    data = load_digits_split("train")
    gen = torch.Generator().manual_seed(recipe.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)  # parameter init uses the global RNG: fork it
        net = build_digits_cnn(data.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    n = len(data)
    for _ in range(recipe.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            x, y = data.images[idx], data.labels[idx]
            if recipe.adv_eps > 0:
                x = _pgd_linf_train(net, x, y, recipe.adv_eps, recipe.adv_steps, gen)
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def load_digits_model(name: str) -> nn.Module:
    """The built-in model ``name`` (a key of :data:`RECIPES`), trained once and cached."""
    recipe = RECIPES[name]
    path = _cache_path(name, recipe)
    net = build_digits_cnn()
    if path.exists():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        with torch.device("cpu"):
            net = train_digits_cnn(recipe)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
    return freeze(NormalizedModel(net))
