"""Curve strategies (issue 13 part 1): ``nested`` against ``incremental`` and ``independent``.

``nested`` stacks every (sample, epsilon) pair in one batch like ``independent``; a pair
fooled at eps_k also decides the pairs of its sample at larger epsilons. Checked here:

- the pair bookkeeping itself (:class:`Nesting`, :class:`ActiveSet`);
- per pair, never weaker than ``independent`` on the same seed for the kernels whose
  random draws do not depend on which samples are still in the batch (PGD, FGSM,
  APGD): each pair follows the same trajectory, and can only leave it fooled;
- monotone curves, every pair verified by the base class (model re-run, norm
  re-measured), for every fixed-epsilon kernel, L-inf and L2, targeted and not;
- against ``incremental`` (and, for the random-search kernels, ``independent``), whose
  random draws differ, robust counts summed over seeds and epsilons within a
  tolerance: the same number of attempts per pair, other draws.
"""

from __future__ import annotations

import pytest
import torch

from sweep.attacks import create
from sweep.attacks.active import ActiveSet, Nesting
from sweep.attacks.base import is_fooled, predict
from sweep.attacks.norms import lp_norm, within

EPS = {"linf": [0.02, 0.05, 0.1, 0.2], "l2": [0.25, 0.5, 1.0, 2.0]}
SAME_DRAWS = [("pgd", {"steps": 10}), ("fgsm", {}), ("apgd", {"steps": 10})]
OTHER_DRAWS = [("noise", {"draws": 5}), ("square", {"queries": 30})]
STRATEGIES = ("incremental", "independent", "nested")


def batch(digits_batch, n=32):
    x, y = digits_batch
    return x[:n], y[:n]


def case(name, params, norm, targeted, digits_batch):
    """``(x, y, targets, attack)`` for one parametrised case."""
    x, y = batch(digits_batch)
    return x, y, (y + 1) % 10 if targeted else None, create(name, norm=norm, **params)


def test_spread_covers_larger_epsilons_of_the_same_sample_only():
    # rows: sample 0 at ranks 0,1,2; sample 1 at ranks 0,1,2 (interleaved)
    nest = Nesting(torch.tensor([0, 1, 0, 1, 0, 1]), torch.tensor([0, 0, 1, 1, 2, 2]), 2)
    hit = torch.tensor([False, False, True, False, False, False])  # sample 0 at rank 1
    covered, src = nest.spread(hit)
    assert covered.tolist() == [False, False, True, False, True, False]
    assert src[2] == 2 and src[4] == 2
    # two hits of one sample: the smallest epsilon is the source
    covered, src = nest.spread(torch.tensor([False, True, False, False, False, True]))
    assert covered.tolist() == [False, True, False, True, False, True]
    assert src[3] == 1 and src[5] == 1


def test_record_and_drop_hands_the_adversarial_to_larger_epsilons():
    images = torch.zeros(4, 1, 1, 1)
    nest = Nesting(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]), 2)
    s = ActiveSet(**{**ActiveSet.outcome(images), "nest": nest})
    adv = torch.arange(4.0).view(4, 1, 1, 1) + 10
    assert s.record_and_drop(torch.tensor([True, False, False, True]), adv)
    assert s.rows.tolist() == [2]  # sample 0 at both epsilons, sample 1 at the larger one
    assert s.fooled.tolist() == [True, True, False, True]
    assert s.result.flatten().tolist() == [10.0, 10.0, 0.0, 13.0]
    # a sub-batch search (one restart) inherits the pairs from its parent set
    child = ActiveSet.outcome(images[s.rows], s)
    assert child["nest"].group.tolist() == [1] and child["nest"].rank.tolist() == [0]
    # another tensor of the same shape does not pick the pairs up by accident
    assert ActiveSet.outcome(images.clone())["nest"] is None


@pytest.mark.parametrize("name,params", SAME_DRAWS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_nested_is_never_weaker_than_independent_per_pair(
    name, params, norm, targeted, digits_model, digits_batch
):
    x, y, targets, atk = case(name, params, norm, targeted, digits_batch)
    for seed in (0, 1):
        ind = atk.curve(digits_model, x, y, EPS[norm], targets=targets, strategy="independent", seed=seed)
        nes = atk.curve(digits_model, x, y, EPS[norm], targets=targets, strategy="nested", seed=seed)
        assert not (nes.robust & ~ind.robust).any()
        assert not (ind.success & ~nes.success).any()


@pytest.mark.parametrize("name,params", SAME_DRAWS + OTHER_DRAWS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_nested_curves_are_monotone_verified_and_as_strong(
    name, params, norm, targeted, digits_model, digits_batch
):
    x, y, targets, atk = case(name, params, norm, targeted, digits_batch)
    eps = EPS[norm]
    total = dict.fromkeys(STRATEGIES, 0)
    for seed in (0, 1, 2):
        for strategy in STRATEGIES:
            c = atk.curve(digits_model, x, y, eps, targets=targets, strategy=strategy, seed=seed)
            total[strategy] += int(c.robust.sum())
            if strategy != "nested":
                continue
            robust, success = c.robust, c.success
            assert (robust[1:] <= robust[:-1]).all()  # a pair robust at eps_j was robust below
            assert (success[1:] >= success[:-1]).all()
            e = torch.tensor(eps).unsqueeze(1).expand_as(c.norm)
            assert within(c.norm[success], e[success]).all()
            assert (success == (is_fooled(c.pred, y, targets) & within(c.norm, e))).all()
    pairs = 3 * len(eps) * x.shape[0]
    # other random draws: the same attempts per pair, so equal up to noise (2% of pairs)
    assert total["nested"] <= total["incremental"] + 0.02 * pairs, total
    assert total["nested"] <= total["independent"] + 0.02 * pairs, total


@pytest.mark.parametrize("name,params", SAME_DRAWS + OTHER_DRAWS)
def test_every_nested_pair_is_verified_by_the_base_class(name, params, digits_model, digits_batch):
    """The stacked call with pairs: each returned success is the model's re-run on that
    pair's own adversarial, within that pair's own epsilon."""
    x, y = batch(digits_batch, 16)
    eps = EPS["linf"]
    k, b = len(eps), x.shape[0]
    nest = Nesting(torch.arange(b).repeat(k), torch.arange(k).repeat_interleave(b), b)
    e = torch.tensor(eps).repeat_interleave(b)
    atk = create(name, **params)
    out = atk._attack(digits_model, x.repeat(k, 1, 1, 1), y.repeat(k), e, None, 0, nest)
    norm = lp_norm(out.adv - x.repeat(k, 1, 1, 1), "linf")
    assert torch.allclose(out.norm, norm)
    assert (out.pred == predict(digits_model, out.adv)).all()
    assert (out.success == ((out.pred != y.repeat(k)) & within(norm, e))).all()


def test_nested_cascade_carries_the_member_that_broke_each_pair(digits_model, digits_batch):
    x, y = batch(digits_batch, 16)
    atk = create("cascade", members=[{"name": "noise", "draws": 2}, {"name": "pgd", "steps": 5}])
    c = atk.curve(digits_model, x, y, EPS["linf"], strategy="nested", seed=0)
    assert c.broken_by is not None and c.broken_by.shape == c.success.shape
    assert ((c.broken_by >= 0) == (~c.robust & (c.clean_pred == y))).all()


def test_minimal_attacks_carry_a_smaller_epsilons_adversarial_under_nested(digits_model, digits_batch):
    x, y = batch(digits_batch)
    atk = create("deepfool", norm="l2", steps=10)
    inc = atk.curve(digits_model, x, y, EPS["l2"], strategy="incremental", seed=0)
    nes = atk.curve(digits_model, x, y, EPS["l2"], strategy="nested", seed=0)
    assert torch.equal(inc.robust, nes.robust) and torch.equal(inc.success, nes.success)
