"""Built-in reference models for the ``digits`` dataset, trained on first use and cached.

- ``digits-cnn``: a small conv net trained normally, 40 epochs (95.6% clean test
  accuracy; PGD-20 L-inf leaves 54.1% at eps 0.1).
- ``digits-cnn-at``: the same net trained adversarially with PGD-L-inf
  (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial
  Attacks", arXiv:1706.06083): eps 0.1, 7 steps of 2.5 * eps / 7, random start,
  20 epochs (97.0% clean; PGD-20 leaves 79.8% at eps 0.1, 29.1% at 0.2). The 40
  epochs it had before gave 97.4% / 80.0% / 25.6% for twice the time.

Training is deterministic (a seeded ``torch.Generator`` for init and shuffling,
CPU, one intra-op thread, no global RNG), prints a progress line (epoch, loss,
training accuracy) to stderr every few seconds, and writes the weights to
``$SWEEP_CACHE_DIR`` (default ``~/.cache/attack-sweep``) via a temp file and a
rename, so several Ray workers training at once cannot corrupt the cache.

Why one thread: an 8x8 convolution has too little work to split, and PyTorch's
OpenMP threads spin-wait for each other; on a loaded 2-CPU machine the default
two threads made an epoch 10-30x slower (digits-cnn: 80 s instead of 5 s for 40
epochs, measured). One thread also makes the weights independent of the
machine's core count.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from sweep.data.digits import load_digits_split
from sweep.models.recipes import RECIPES, TrainingRecipe
from sweep.models.wrapper import NormalizedModel, freeze
from sweep.results import atomic

__all__ = ["RECIPES", "TrainingRecipe", "build_digits_cnn", "load_digits_model"]


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
    # (the spec's model identity, sweep.models.recipes.recipe_identity, holds the same)
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


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread inside, the previous setting restored after (module docstring)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


Progress = Callable[[int, int, str], None]
"""``(epoch, epochs, line)``: called after each epoch."""


def train_digits_cnn(recipe: TrainingRecipe, progress: Progress | None = None,
                     name: str = "digits-cnn") -> nn.Module:
    """Train the digits CNN per ``recipe`` on the ``train`` split; returns the bare net.

    ``progress`` receives each epoch's number, the epoch count and a line
    ("<name>: epoch 3/40 loss 0.210 train acc 93.4% (clean) 1.2s"); the training accuracy is over the epoch's batches as trained
    on (PGD adversarials for adversarial training, so robust training accuracy).
    """
    data = load_digits_split("train")
    gen = torch.Generator().manual_seed(recipe.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)  # parameter init uses the global RNG: fork it
        net = build_digits_cnn(data.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    n = len(data)
    on = "PGD adversarials" if recipe.adv_eps > 0 else "clean"
    t0 = time.perf_counter()
    with single_thread():
        for epoch in range(1, recipe.epochs + 1):
            order = torch.randperm(n, generator=gen)
            loss_sum, correct = 0.0, 0
            for start in range(0, n, recipe.batch_size):
                idx = order[start : start + recipe.batch_size]
                x, y = data.images[idx], data.labels[idx]
                if recipe.adv_eps > 0:
                    x = _pgd_linf_train(net, x, y, recipe.adv_eps, recipe.adv_steps, gen)
                logits = net(x)
                loss = nn.functional.cross_entropy(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((logits.detach().argmax(1) == y).sum())
            if progress is not None:
                progress(epoch, recipe.epochs, f"{name}: epoch {epoch}/{recipe.epochs} loss {loss_sum / n:.3f} "
                         f"train acc {correct / n:.1%} ({on}) {time.perf_counter() - t0:.1f}s")
    return net


def throttled_stderr(every_s: float = 2.0) -> Progress:
    """A progress sink that prints to stderr the first line, then one line per
    ``every_s`` seconds and the last epoch's, so a user is
    never left without news for long and never flooded."""
    last = [-float("inf")]

    def emit(epoch: int, epochs: int, line: str) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or epoch == epochs:
            last[0] = now
            print(line, file=sys.stderr, flush=True)

    return emit


def load_digits_model(name: str) -> nn.Module:
    """The built-in model ``name`` (a key of :data:`RECIPES`), trained once and cached."""
    recipe = RECIPES[name]
    path = _cache_path(name, recipe)
    net = build_digits_cnn()
    if path.exists():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        print(f"{name}: first use, training it on CPU (cached at {path})", file=sys.stderr, flush=True)
        with torch.device("cpu"):
            net = train_digits_cnn(recipe, throttled_stderr(), name)
        weights = io.BytesIO()
        torch.save(net.state_dict(), weights)
        atomic.write_file(path, weights.getbuffer())
    return freeze(NormalizedModel(net))
