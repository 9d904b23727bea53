"""Square Attack: reference parity of its pieces, strength next to torchattacks,
per-sample budgets, and that fooled samples stop costing queries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.attacks import create
from sweep.attacks.square import eta, eta_rectangles, p_schedule
from sweep.data.digits import load_digits_split

torchattacks = pytest.importorskip("torchattacks")

QUERIES = 100  # small enough for a busy CPU, large enough to fool most of digits-cnn


class RowCounter(nn.Module):
    """Wraps a model and records how many rows each forward call receives."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.shape[0])
        return self.model(x)


@pytest.fixture(scope="module")
def digits64() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits_split("test").take(64)
    return data.images, data.labels


def robust_accuracy(model: nn.Module, adv: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(adv).argmax(1) == labels).float().mean())


def test_pieces_match_the_reference_code():
    """The closed-form eta pattern and the p schedule equal torchattacks' port of the reference."""
    ref = torchattacks.Square.__new__(torchattacks.Square)
    ref.device, ref.rescale_schedule, ref.p_init = "cpu", True, 0.8
    for side in range(1, 12):
        for rows in {side // 2, side - side // 2} - {0}:
            mine = eta_rectangles(rows, side).float()
            torch.testing.assert_close(mine, ref.eta_rectangles(rows, side), rtol=0, atol=1e-6)
        assert float(eta(side).norm()) == pytest.approx(1.0)
    for queries in (200, 1000):
        ref.n_queries = queries
        its = torch.arange(queries)
        expected = torch.tensor([ref.p_selection(int(i)) for i in its], dtype=torch.float64)
        torch.testing.assert_close(p_schedule(its, queries, 0.8), expected)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.15), ("l2", 1.5)])
def test_as_strong_as_torchattacks(norm, eps, digits_model, digits64):
    images, labels = digits64
    clean = robust_accuracy(digits_model, images, labels)
    out = create("square", norm=norm, queries=QUERIES)(digits_model, images, labels, eps, seed=0)
    ours = float((~out.success).float().mean())
    assert ours == pytest.approx(robust_accuracy(digits_model, out.adv, labels))
    peer = torchattacks.Square(
        digits_model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, n_queries=QUERIES, seed=0
    )
    theirs = robust_accuracy(digits_model, peer(images, labels), labels)
    print(f"square-{norm} eps={eps}: clean {clean:.3f} ours {ours:.3f} torchattacks {theirs:.3f}")
    assert ours <= clean - 0.5, "the attack should fool most of a plain digits CNN"
    assert ours <= theirs + 0.1, f"ours {ours:.3f} much weaker than torchattacks {theirs:.3f}"


def test_linf_spends_each_samples_own_budget(digits_model, digits_batch):
    """Vertical stripes put every pixel at +-eps_i (or the box edge): the norm is eps_i."""
    images, labels = digits_batch
    eps = torch.where(torch.arange(len(labels)) % 2 == 0, 0.05, 0.15)
    out = create("square", queries=20)(digits_model, images, labels, eps, seed=3)
    attacked = out.clean_pred == labels
    torch.testing.assert_close(out.norm[attacked], eps[attacked])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fooled_samples_stop_costing_queries(norm, digits_model, digits_batch):
    images, labels = digits_batch
    counter = RowCounter(digits_model)
    eps = {"linf": 0.15, "l2": 1.5}[norm]
    out = create("square", norm=norm, queries=QUERIES)(counter, images, labels, eps, seed=0)
    correct = out.clean_pred == labels
    survivors = int((correct & ~out.success).sum())
    # first and last calls are the base class's clean prediction and verification
    assert counter.rows[0] == counter.rows[-1] == len(labels)
    attack_rows = counter.rows[1:-1]
    assert attack_rows[0] == int(correct.sum())  # the initial query: every attacked sample
    assert attack_rows == sorted(attack_rows, reverse=True), "a fooled sample came back"
    if survivors:
        assert len(attack_rows) == QUERIES  # survivors get the whole budget, no more
        assert attack_rows[-1] >= survivors
    else:
        assert len(attack_rows) <= QUERIES
    full_price = int(correct.sum()) * QUERIES
    assert sum(attack_rows) < 0.5 * full_price, (sum(attack_rows), full_price)


def test_restarts_attack_only_survivors(digits_model, digits_batch):
    images, labels = digits_batch
    counter = RowCounter(digits_model)
    one = create("square", queries=20)(digits_model, images, labels, 0.1, seed=0)
    two = create("square", queries=20, restarts=2)(counter, images, labels, 0.1, seed=0)
    attack_rows = counter.rows[1:-1]
    survivors_after_first = int(((one.clean_pred == labels) & ~one.success).sum())
    assert survivors_after_first > 0, "budget too large for this check: nothing left to restart"
    # the second run starts with one query for each survivor of the first (same seed/stream)
    assert attack_rows[20] == survivors_after_first
    assert bool((two.success >= one.success).all()), "a restart lost a fooled sample"
