"""A targeted attack's robustness verdict: robust means correct on the adversarial.

For a targeted attack ``success`` is "hit the target"; an adversarial misclassified into
a third class misses the target but is not robust (issue #17: robust accuracy was
over-reported by up to 25 points when ``robust`` was ``clean_correct and not success``).
Parametrised over the registry: every attack that supports targets is checked.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.attacks import attack_class, available, create
from sweep.attacks.base import FixedAttack, keep_worst
from sweep.attacks.norms import lp_norm, within
from tests.attacks.budgets import EPS_BY_NORM, FAST_PARAMS

TARGETED = [
    (name, norm)
    for name in available()
    if attack_class(name).supports_targeted
    for norm in attack_class(name).norms
]


def least_likely(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = model(images)
    logits[torch.arange(len(labels)), labels] = float("inf")
    return logits.argmin(dim=1)


def expected_robust(model, images, labels, adv, norm, eps) -> torch.Tensor:
    """The verdict recomputed from scratch: the model re-run, the norm re-measured."""
    with torch.no_grad():
        clean, pred = model(images).argmax(1), model(adv).argmax(1)
    return (clean == labels) & (pred == labels) & within(lp_norm(adv - images, norm), eps)


@pytest.mark.parametrize(("name", "norm"), TARGETED)
def test_no_robust_verdict_on_a_misclassified_adversarial(name, norm, digits_model, digits_batch):
    images, labels = digits_batch
    targets = least_likely(digits_model, images, labels)
    eps = EPS_BY_NORM[norm]
    out = create(name, norm=norm, **FAST_PARAMS.get(name, {}))(
        digits_model, images, labels, eps, targets=targets, seed=1
    )
    budget = torch.full_like(out.norm, eps)
    want = expected_robust(digits_model, images, labels, out.adv, norm, budget)
    assert torch.equal(out.robust, want)
    # success keeps the attack's own criterion: the target hit
    assert torch.equal(out.success, (out.pred == targets) & within(out.norm, budget))
    assert not bool((out.robust & (out.pred != labels)).any())


@pytest.mark.parametrize("strategy", ["incremental", "independent"])
@pytest.mark.parametrize(("name", "norm"), TARGETED)
def test_targeted_curve_verdicts(name, norm, strategy, digits_model, digits_batch):
    """Every epsilon's verdict follows the rule; incremental curves (and minimal attacks)
    never rise, since a misclassifying adversarial of a smaller budget is carried."""
    images, labels = digits_batch[0][:16], digits_batch[1][:16]
    targets = least_likely(digits_model, images, labels)
    top = EPS_BY_NORM[norm]
    epsilons = [0.0, top / 2, top]
    cur = create(name, norm=norm, **FAST_PARAMS.get(name, {})).curve(
        digits_model, images, labels, epsilons, targets=targets, strategy=strategy, seed=1
    )
    eps = torch.tensor(epsilons).unsqueeze(1).expand_as(cur.norm)
    clean_ok = (cur.clean_pred == labels).unsqueeze(0)
    assert bool(within(cur.norm, eps).all())
    assert torch.equal(cur.robust, clean_ok & (cur.pred == labels.unsqueeze(0)))
    assert torch.equal(cur.success & clean_ok, (cur.pred == targets.unsqueeze(0)) & clean_ok)
    if strategy == "incremental":
        assert bool((cur.robust[1:] <= cur.robust[:-1]).all())


def test_off_target_misclassification_is_not_robust(digits_model):
    """The issue's reproduction: APGD-DLR at the least-likely class, L-inf 0.2. Many
    adversarials miss the target yet are misclassified: none of them is robust."""
    from sweep.data.digits import load_digits_split

    data = load_digits_split("test").take(64)
    x, y = data.images, data.labels
    targets = least_likely(digits_model, x, y)
    out = create("apgd", norm="linf", loss="dlr", steps=20)(digits_model, x, y, 0.2, targets=targets, seed=0)
    clean = out.clean_pred == y
    off_target = clean & ~out.success & (out.pred != y)
    assert int(off_target.sum()) >= 3, "the reproduction needs off-target misclassifications"
    assert not bool(out.robust[off_target].any())
    # the old rule (clean_correct and not success) over-reports by exactly these samples
    old = clean & ~out.success
    assert int(old.sum()) - int(out.robust.sum()) == int(off_target.sum())


class _Line(nn.Module):
    """Two classes split by x[0] = 0.5: class 1 to the right. A third class whose logit
    peaks where x[1] > 0.5 lets an adversarial land off target."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, 0], x[:, 1]
        return torch.stack([0.5 - a, a - 0.5, 10 * (b - 0.5)], dim=1)


class _WeakerAtLargerEps(FixedAttack):
    """A search that finds an off-target misclassification within 0.3 but, given a
    larger budget, returns a correctly classified point (as a restart can)."""

    name = "weaker"
    norms = ("linf",)

    def _run(self, model, images, labels, eps, targets, generator):
        adv = images.clone()
        small = eps <= 0.35
        adv[small, 1] = images[small, 1] + eps[small]  # into class 2: off target
        return adv


def test_incremental_curve_keeps_the_misclassifying_adversarial():
    model = _Line()
    x = torch.tensor([[0.2, 0.3]])  # class 0, target class 1; class 2 lies at x[1] > 0.5
    y, t = torch.tensor([0]), torch.tensor([1])
    attack = _WeakerAtLargerEps()
    cur = attack.curve(model, x, y, [0.1, 0.3, 0.4], targets=t)
    assert cur.pred.squeeze(1).tolist() == [0, 2, 2]  # 0.4 reports the 0.3 adversarial
    assert cur.robust.squeeze(1).tolist() == [True, False, False]
    assert cur.success.squeeze(1).tolist() == [False, False, False]  # target never hit
    independent = attack.curve(model, x, y, [0.1, 0.3, 0.4], targets=t, strategy="independent")
    assert independent.robust.squeeze(1).tolist() == [True, False, True]  # as papers report


def test_keep_worst_ranks_misclassified_then_target_hit():
    b = torch.tensor
    carried = (b([2, 2, 0, 1]), b([0.1, 0.1, 0.0, 0.2]), b([False, False, False, True]),
               b([True, True, False, True]))
    new = (b([0, 1, 3, 3]), b([0.3, 0.3, 0.3, 0.3]), b([False, True, False, False]),
           b([False, True, True, True]))
    pred, norm, success, mis = keep_worst(carried, new)
    assert pred.tolist() == [2, 1, 3, 1]
    assert success.tolist() == [False, True, False, True]
    assert mis.tolist() == [True, True, True, True]
    assert norm.tolist() == pytest.approx([0.1, 0.3, 0.3, 0.2])
