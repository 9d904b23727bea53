"""APGD: the paper's schedule, sample-for-sample agreement with torchattacks' port of
the reference, never weaker than PGD, early stop with aligned per-sample state,
restarts, targeted variants and parameter validation.

torchattacks' APGD seeds the global RNG with its ``seed`` and draws its start only
for the samples the model classifies correctly, exactly the samples (and the
stream) the kernel's seeded generator draws for: the two runs start from the same
points and can be compared per sample.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchattacks
from torch import Tensor

from sweep.attacks import attack_params, create
from sweep.attacks.apgd import checkpoints
from sweep.data.digits import load_digits_split
from tests.attacks.test_pgd import CountingModel, RandomStartOnly, fooled, run_peer

PEER_NORM = {"linf": "Linf", "l2": "L2"}


@pytest.fixture(scope="module")
def test128() -> tuple[Tensor, Tensor]:
    data = load_digits_split("test").take(128)
    return data.images, data.labels


def paper_checkpoints(steps: int) -> list[int]:
    """``ceil(p_j N)`` with the paper's recurrence on the fractions ``p_j``."""
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1.0 + 1e-9:
            break
        p.append(nxt)
    return [math.ceil(round(q * steps, 6)) for q in p[1:]]


# -- the schedule and the defaults ----------------------------------------------------
def test_checkpoints_follow_the_paper():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(100) == paper_checkpoints(100)
    assert checkpoints(1000) == paper_checkpoints(1000)
    # small budgets: whole iterations, rounded down and at least 1, as the reference
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert checkpoints(1) == [1]


def test_defaults_are_the_reference_budget():
    atk = create("apgd")
    assert atk.steps == 100
    assert atk.momentum == 0.75 and atk.rho == 0.75
    assert atk.rel_stepsize == 2.0  # initial step 2 * eps
    assert atk.loss == "ce" and atk.restarts == 1 and atk.norm == "linf"
    assert atk.checkpoints == [22, 41, 57, 70, 80, 87, 93, 99]
    assert attack_params("apgd")["steps"] == 100


# -- the peer -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_name", "norm", "eps", "loss"),
    [
        ("digits_model_at", "linf", 0.15, "ce"),
        ("digits_model_at", "linf", 0.15, "dlr"),
        ("digits_model_at", "l2", 1.0, "ce"),
        ("digits_model_at", "l2", 1.0, "dlr"),
        ("digits_model", "linf", 0.1, "ce"),
        ("digits_model", "l2", 0.5, "dlr"),
    ],
)
def test_apgd_matches_torchattacks_apgd_per_sample(request, test128, model_name, norm, eps, loss):
    """The same starts and the same schedule: the same samples fall."""
    model = request.getfixturevalue(model_name)
    images, labels = test128
    peer = torchattacks.APGD(model, norm=PEER_NORM[norm], eps=eps, steps=20, loss=loss, seed=0)
    theirs = fooled(model, run_peer(peer, images, labels, seed=0), labels)
    ours = create("apgd", norm=norm, steps=20, loss=loss)(model, images, labels, eps, seed=0)
    assert torch.equal(ours.success, theirs)


@pytest.mark.parametrize("model_name", ["digits_model", "digits_model_at"])
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("linf", 0.15), ("l2", 0.5), ("l2", 1.0)])
def test_apgd_ce_never_weaker_than_torchattacks_pgd(request, test128, model_name, norm, eps):
    if (model_name, norm, eps) == ("digits_model", "l2", 1.0):
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason=(
                    "measured: 4 of 128 unbroken vs 2 for PGDL2 (seed 0); APGD's reference start "
                    "lies on the L2 sphere; torchattacks' own APGD also leaves 4"
                ),
            )
        )
    model = request.getfixturevalue(model_name)
    images, labels = test128
    steps, alpha = 20, 2.5 * eps / 20  # the same budget: eps and steps
    peer_cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    peer = peer_cls(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    theirs = fooled(model, run_peer(peer, images, labels, seed=0), labels)
    ours = create("apgd", norm=norm, steps=steps)(model, images, labels, eps, seed=0)
    # one sample of slack: the random starts differ
    assert int((~ours.success).sum()) <= int((~theirs).sum()) + 1


# -- early stop with compaction ----------------------------------------------------------
def test_early_stop_keeps_per_sample_state_aligned(digits_model_at, test128):
    """Compaction drops fooled samples mid-schedule (through step halvings and
    restarts from the best point): the survivors must not notice."""
    images, labels = test128
    runs = {}
    for early_stop in (True, False):
        counting = CountingModel(digits_model_at)
        out = create("apgd", steps=20, early_stop=early_stop)(
            counting, images, labels, 0.15, seed=0
        )
        runs[early_stop] = (out, counting.sizes[1:-1])  # drop the clean check and verify
    (fast, fast_sizes), (full, full_sizes) = runs[True], runs[False]
    assert torch.equal(fast.success, full.success)
    torch.testing.assert_close(fast.adv, full.adv, atol=1e-5, rtol=0)
    assert len(set(full_sizes)) == 1 and len(full_sizes) == 21  # start + 20 steps
    assert fast_sizes == sorted(fast_sizes, reverse=True)
    assert fast_sizes[-1] < full_sizes[-1] and sum(fast_sizes) < sum(full_sizes)


# -- restarts, targeted, errors -------------------------------------------------------------
def test_restarts_keep_the_best_per_sample():
    model = RandomStartOnly()
    images = torch.full((200, 1, 8, 8), 0.5)
    labels = torch.zeros(200, dtype=torch.long)
    one = create("apgd", steps=5, restarts=1)(model, images, labels, 0.1, seed=3)
    five = create("apgd", steps=5, restarts=5)(model, images, labels, 0.1, seed=3)
    assert 0.2 < one.success.float().mean() < 0.45
    assert five.success.float().mean() > 0.7  # per sample: ~1 - 0.7^5
    assert bool((five.success >= one.success).all())


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_targeted_apgd_reaches_targets(digits_model, test128, loss):
    images, labels = test128
    targets = (labels + 3) % 10
    out = create("apgd", steps=20, loss=loss)(digits_model, images, labels, 0.3, targets=targets)
    with torch.no_grad():
        pred = digits_model(out.adv).argmax(1)
    assert torch.equal(out.success, pred == targets)
    assert out.success.float().mean() >= 0.95


def test_dlr_refuses_too_few_classes():
    images = torch.full((4, 1, 8, 8), 0.5)
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="at least 3 classes"):
        create("apgd", loss="dlr")(RandomStartOnly(), images, labels, 0.1)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"restarts": 0}, "restarts"),
        ({"loss": "margin"}, "valid: ce, dlr"),
        ({"rho": 0.0}, "rho"),
        ({"momentum": 1.5}, "momentum"),
        ({"rel_stepsize": 0.0}, "rel_stepsize"),
        ({"norm": "l0"}, "norm"),
        ({"eot_iter": 0}, "eot_iter"),
    ],
)
def test_apgd_rejects_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        create("apgd", **params)
