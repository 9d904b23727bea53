"""The contract every registered attack keeps, parametrised over the registry:
a new attack is tested here with no test edits."""

from __future__ import annotations

import pytest
import torch

from sweep.attacks import attack_class, available, create
from sweep.attacks.norms import lp_norm, within
from tests.attacks.budgets import EPS_BY_NORM, FAST_PARAMS


def _cases() -> list[tuple[str, str]]:
    cases = []
    for name in available():
        try:
            norms = attack_class(name).norms
        except ImportError:  # a registered attack whose module is missing fails below
            norms = ("missing",)
        cases += [(name, norm) for norm in norms]
    return cases


CASES = _cases()


def make(name: str, norm: str):
    return create(name, norm=norm, **FAST_PARAMS.get(name, {}))


@pytest.fixture(scope="module")
def results(digits_model, digits_batch):
    """One attack call per (attack, norm), shared by the checks below."""
    cache = {}

    def get(name, norm):
        if (name, norm) not in cache:
            images, labels = digits_batch
            cache[name, norm] = make(name, norm)(
                digits_model, images, labels, EPS_BY_NORM[norm], seed=1
            )
        return cache[name, norm]

    return get


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_output_shape_bounds_and_budget(name, norm, results, digits_batch):
    images, _ = digits_batch
    out = results(name, norm)
    assert out.adv.shape == images.shape
    assert out.adv.dtype == images.dtype
    assert float(out.adv.min()) >= 0.0 and float(out.adv.max()) <= 1.0
    measured = lp_norm(out.adv - images, norm)
    torch.testing.assert_close(out.norm, measured)
    eps = torch.full_like(measured, EPS_BY_NORM[norm])
    assert bool(within(measured, eps).all()), f"max norm {float(measured.max())} > eps"


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_success_is_what_the_model_says(name, norm, results, digits_model, digits_batch):
    _, labels = digits_batch
    out = results(name, norm)
    with torch.no_grad():
        pred = digits_model(out.adv).argmax(1)
    assert torch.equal(out.pred, pred)
    assert torch.equal(out.success, pred != labels)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_same_seed_same_result(name, norm, results, digits_model, digits_batch):
    images, labels = digits_batch
    again = make(name, norm)(digits_model, images, labels, EPS_BY_NORM[norm], seed=1)
    first = results(name, norm)
    assert torch.equal(again.adv, first.adv)
    assert torch.equal(again.success, first.success)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_zero_eps_fools_nothing_correct(name, norm, digits_model, digits_batch):
    images, labels = digits_batch
    out = make(name, norm)(digits_model, images, labels, 0.0)
    correct = out.clean_pred == labels
    assert not bool(out.success[correct].any())
    assert torch.equal(out.adv, images)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_per_sample_eps(name, norm, digits_model, digits_batch):
    """Half the batch gets eps 0: those samples must come back untouched."""
    images, labels = digits_batch
    eps = torch.full((len(labels),), EPS_BY_NORM[norm])
    eps[::2] = 0.0
    out = make(name, norm)(digits_model, images, labels, eps, seed=1)
    assert torch.equal(out.adv[::2], images[::2])
    assert bool(within(out.norm, eps).all())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_incremental_curve_is_monotone(name, norm, digits_model, digits_batch):
    images, labels = digits_batch
    top = EPS_BY_NORM[norm]
    epsilons = [0.0, top / 4, top / 2, top]
    cur = make(name, norm).curve(digits_model, images[:16], labels[:16], epsilons, seed=1)
    assert cur.success.shape == (4, 16)
    # a sample fooled at a smaller epsilon stays fooled at every larger one
    assert bool((cur.success[:-1] <= cur.success[1:]).all())
    acc = cur.robust_accuracy()
    assert acc == sorted(acc, reverse=True)
    assert bool(within(cur.norm, torch.tensor(epsilons).unsqueeze(1).expand_as(cur.norm)).all())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_model_untouched(name, norm, digits_model, digits_batch):
    images, labels = digits_batch
    before = [p.detach().clone() for p in digits_model.parameters()]
    digits_model.train()
    try:
        make(name, norm)(digits_model, images[:8], labels[:8], EPS_BY_NORM[norm])
        assert digits_model.training, "the caller's mode must be restored"
    finally:
        digits_model.eval()
    for p, q in zip(before, digits_model.parameters(), strict=True):
        assert torch.equal(p, q)
        assert p.grad is None


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_targeted_success_means_target(name, norm, digits_model, digits_batch):
    cls = attack_class(name)
    if not cls.supports_targeted:
        pytest.skip(f"{name} is untargeted only")
    images, labels = digits_batch
    targets = (labels + 1) % 10
    out = make(name, norm)(digits_model, images, labels, EPS_BY_NORM[norm], targets=targets)
    with torch.no_grad():
        pred = digits_model(out.adv).argmax(1)
    assert torch.equal(out.success, pred == targets)
