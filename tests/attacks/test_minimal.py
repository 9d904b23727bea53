"""Minimization attacks (CW-L2, DeepFool, FMN, L-BFGS, FAB): one unbounded run per curve,
finite budgets never weaker than the curve, batch compaction, and strength checks
against torchattacks and against each other on the built-in digits models.

Budgets are small (tests/attacks/budgets.py) so the module stays fast on a CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.attacks import create
from sweep.attacks.base import is_fooled
from sweep.attacks.norms import lp_norm, project, within
from sweep.data.digits import load_digits_split
from tests.attacks.budgets import EPS_BY_NORM, FAST_PARAMS

MINIMAL = [
    ("cw", "l2"),
    ("deepfool", "l2"),
    ("deepfool", "linf"),
    ("fmn", "linf"),
    ("fmn", "l2"),
    ("fmn", "l1"),
    ("lbfgs", "l2"),
    ("fab", "linf"),
    ("fab", "l2"),
    ("fab", "l1"),
    ("fab-t", "linf"),
]


def make(name: str, norm: str, **extra):
    return create(name, norm=norm, **{**FAST_PARAMS.get(name, {}), **extra})


class RowCounter(nn.Module):
    """Wraps a model and counts the images it is asked to classify (forward rows)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.model(x)


@pytest.fixture(scope="module")
def batch64() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 64 images of the digits test split."""
    data = load_digits_split("test").take(64)
    return data.images, data.labels


@pytest.fixture(scope="module")
def correct64(digits_model, batch64):
    """The correctly classified ones among them (62 of 64 for digits-cnn)."""
    images, labels = batch64
    with torch.no_grad():
        keep = digits_model(images).argmax(1) == labels
    return images[keep], labels[keep]


# -- curves from one run --------------------------------------------------------------


@pytest.mark.parametrize(("name", "norm"), MINIMAL)
def test_curve_follows_the_min_norm_rule(name, norm, digits_model, digits_batch):
    images, labels = digits_batch[0][:16], digits_batch[1][:16]
    top = EPS_BY_NORM[norm]
    epsilons = [top / 8, top / 4, top / 2, top, 4 * top]
    atk = make(name, norm)
    cur = atk.curve(digits_model, images, labels, epsilons, strategy="independent", seed=3)
    unbounded = atk(digits_model, images, labels, float("inf"), seed=3)
    correct = unbounded.clean_pred == labels
    assert cur.min_norm is not None
    # every correctly classified digit falls to an unbounded minimization attack
    assert bool(torch.isfinite(cur.min_norm[correct]).all()), cur.min_norm
    torch.testing.assert_close(cur.min_norm[correct], unbounded.norm[correct])
    tol = torch.tensor(1e-5)
    for k, eps in enumerate(epsilons):
        e = torch.full_like(cur.min_norm, eps)
        with torch.no_grad():
            projected_fools = is_fooled(
                digits_model(project(images, unbounded.adv, e, norm)).argmax(1), labels, None
            )
        inside = cur.min_norm <= eps
        # min_norm <= eps implies success; success implies min_norm <= eps (with the
        # float tolerance) or that the projection of the minimal adversarial fooled
        assert bool(cur.success[k][inside & correct].all())
        explained = (cur.min_norm <= eps * (1 + tol)) | projected_fools
        assert bool(explained[cur.success[k] & correct].all())
    incremental = atk.curve(digits_model, images, labels, epsilons, seed=3)
    assert bool((incremental.success[:-1] <= incremental.success[1:]).all())
    assert bool((incremental.success >= cur.success).all())


@pytest.mark.parametrize(("name", "norm"), MINIMAL)
def test_finite_eps_is_never_weaker_than_the_curve(name, norm, digits_model, digits_batch):
    """A finite budget may stop a sample early, but only once it already succeeded."""
    images, labels = digits_batch[0][:16], digits_batch[1][:16]
    top = EPS_BY_NORM[norm]
    epsilons = [top / 4, top / 2]
    atk = make(name, norm)
    cur = atk.curve(digits_model, images, labels, epsilons, strategy="independent", seed=0)
    for k, eps in enumerate(epsilons):
        out = atk(digits_model, images, labels, eps, seed=0)
        assert bool((out.success >= cur.success[k]).all()), (eps, out.success, cur.success[k])


@pytest.mark.parametrize(
    ("name", "norm"), [("cw", "l2"), ("fmn", "l2"), ("lbfgs", "l2"), ("fab", "l2")]
)
def test_finite_eps_stops_samples_that_are_done(name, norm, digits_model, digits_batch):
    """Batch compaction: with a budget every sample meets early, fewer rows are run.

    (CW gains the least: its first values of c fool nothing and run in full either way.)
    """
    images, labels = digits_batch[0][:16], digits_batch[1][:16]
    counter = RowCounter(digits_model)
    atk = make(name, norm)
    atk(counter, images, labels, float("inf"))
    unbounded_rows, counter.rows = counter.rows, 0
    out = atk(counter, images, labels, 4.0)
    correct = out.clean_pred == labels
    assert bool(out.success[correct].all())
    assert counter.rows < 0.75 * unbounded_rows, (counter.rows, unbounded_rows)


def test_deepfool_drops_fooled_samples(digits_model, digits_batch):
    images, labels = digits_batch
    counter = RowCounter(digits_model)
    out = make("deepfool", "l2", steps=50)(counter, images, labels, float("inf"))
    assert bool(out.success.all())
    # a full batch for all 50 steps would be 50 * 32 rows (plus the clean and verify passes)
    assert counter.rows < 10 * len(labels)


# -- strength: cross-checks against torchattacks and between our attacks ---------------


def _median(norms: torch.Tensor, mask: torch.Tensor) -> float:
    return float(norms[mask].median())


def _theirs(model, images, labels, adv):
    """Re-run the model on a peer's adversarials; their success and L2 norms."""
    with torch.no_grad():
        fooled = model(adv).argmax(1) != labels
    return fooled, lp_norm(adv - images, "l2")


def test_cw_is_at_least_as_strong_as_torchattacks(digits_model, correct64):
    torchattacks = pytest.importorskip("torchattacks")
    images, labels = correct64[0][:32], correct64[1][:32]
    steps, searches = 20, 5  # ours: 5 values of c x 20 steps; theirs: 100 steps at c = 1
    out = create("cw", steps=steps, binary_search_steps=searches)(
        digits_model, images, labels, float("inf")
    )
    peer = torchattacks.CW(digits_model, c=1.0, kappa=0, steps=steps * searches, lr=0.01)
    fooled, norms = _theirs(digits_model, images, labels, peer(images, labels))
    assert int(out.success.sum()) >= int(fooled.sum())
    both = out.success & fooled
    assert int(both.sum()) >= len(labels) // 2
    assert _median(out.norm, both) <= 1.1 * _median(norms, both)
    assert _median(out.norm, out.success) <= 1.1 * _median(norms, fooled)


@pytest.mark.parametrize("which", ["digits_model", "digits_model_at"])
def test_deepfool_is_at_least_as_strong_as_torchattacks(which, request):
    torchattacks = pytest.importorskip("torchattacks")
    model = request.getfixturevalue(which)
    data = load_digits_split("test").take(32)
    with torch.no_grad():
        keep = model(data.images).argmax(1) == data.labels
    images, labels = data.images[keep], data.labels[keep]
    out = create("deepfool", steps=10)(model, images, labels, float("inf"))
    fooled, norms = _theirs(
        model, images, labels, torchattacks.DeepFool(model, steps=10)(images, labels)
    )
    assert int(out.success.sum()) >= int(fooled.sum())
    both = out.success & fooled
    assert int(both.sum()) >= len(labels) // 2
    # the same algorithm: on the samples both fool, the same minimal norms
    assert _median(out.norm, both) <= 1.1 * _median(norms, both)


def test_fmn_l2_finds_about_the_norms_cw_finds(digits_model, correct64):
    images, labels = correct64[0][:16], correct64[1][:16]
    cw = create("cw")(digits_model, images, labels, float("inf"))  # default budget: 9 x 100
    fmn = create("fmn", norm="l2", steps=30)(digits_model, images, labels, float("inf"))
    assert bool(cw.success.all()) and bool(fmn.success.all())
    ratio = float(fmn.norm.median()) / float(cw.norm.median())
    assert 0.85 <= ratio <= 1.15, ratio


def test_fmn_linf_finds_about_the_norms_deepfool_finds(digits_model, correct64):
    images, labels = correct64
    df = create("deepfool", norm="linf", steps=20)(digits_model, images, labels, float("inf"))
    fmn = create("fmn", norm="linf", steps=30)(digits_model, images, labels, float("inf"))
    assert bool(fmn.success.all()) and bool(df.success.all())
    assert float(fmn.norm.median()) <= 1.1 * float(df.norm.median())


def test_lbfgs_targeted_reaches_the_target(digits_model, correct64):
    images, labels = correct64[0][:24], correct64[1][:24]
    targets = (labels + 3) % 10
    out = make("lbfgs", "l2")(digits_model, images, labels, float("inf"), targets=targets)
    assert float(out.success.float().mean()) >= 0.9
    assert torch.equal(out.success, out.pred == targets)


def test_lbfgs_untargeted_is_close_to_deepfool(digits_model, correct64):
    images, labels = correct64[0][:24], correct64[1][:24]
    lb = make("lbfgs", "l2")(digits_model, images, labels, float("inf"))
    df = create("deepfool", steps=20)(digits_model, images, labels, float("inf"))
    assert bool(lb.success.all())
    assert float(lb.norm.median()) <= 1.25 * float(df.norm.median())


@pytest.mark.parametrize(("name", "norm"), [("cw", "l2"), ("fmn", "l2"), ("fmn", "linf")])
def test_targeted_minimal_attacks_reach_their_targets(name, norm, digits_model, correct64):
    images, labels = correct64[0][:16], correct64[1][:16]
    targets = (labels + 5) % 10
    # a given class is further than the nearest one: CW needs more steps to get there
    # (background pixels at 0 sit where tanh is flat, ~7 / lr steps from moving)
    extra = {"steps": 100, "binary_search_steps": 6} if name == "cw" else {}
    out = make(name, norm, **extra)(digits_model, images, labels, float("inf"), targets=targets)
    assert bool(out.success.all())
    untargeted = make(name, norm, **extra)(digits_model, images, labels, float("inf"))
    # reaching one given class costs at least what leaving the label does (up to search noise)
    assert float(out.norm.median()) >= 0.9 * float(untargeted.norm.median())


def test_cw_confidence_leaves_a_margin(digits_model, correct64):
    images, labels = correct64[0][:16], correct64[1][:16]
    kappa = 5.0
    out = create("cw", steps=30, binary_search_steps=6, confidence=kappa)(
        digits_model, images, labels, float("inf")
    )
    assert bool(out.success.any())
    with torch.no_grad():
        logits = digits_model(out.adv[out.success])
    own = logits.gather(1, labels[out.success].unsqueeze(1)).squeeze(1)
    best_other = logits.scatter(1, labels[out.success].unsqueeze(1), float("-inf")).amax(1)
    assert bool((best_other - own >= kappa - 1e-3).all())
    plain = create("cw", steps=30, binary_search_steps=6)(
        digits_model, images, labels, float("inf")
    )
    both = out.success & plain.success
    assert float(out.norm[both].median()) > float(plain.norm[both].median())


def test_deepfool_with_fewer_candidates_still_fools(digits_model, digits_batch):
    images, labels = digits_batch
    out = create("deepfool", candidates=3, steps=20)(digits_model, images, labels, float("inf"))
    assert bool(out.success.all())
    assert bool(within(out.norm, torch.full_like(out.norm, 3.0)).all())


def test_fmn_box_aware_step_helps_on_saturated_images(digits_model, correct64):
    """The reference step (box_aware=False) is mostly clipped away on digits, whose
    pixels sit at 0 or 1; dropping the blocked components lets FMN-L2 fool them all."""
    images, labels = correct64[0][:32], correct64[1][:32]
    aware = create("fmn", norm="l2", steps=30)(digits_model, images, labels, float("inf"))
    plain = create("fmn", norm="l2", steps=30, box_aware=False)(
        digits_model, images, labels, float("inf")
    )
    assert bool(aware.success.all())
    assert int(aware.success.sum()) > int(plain.success.sum())


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("cw", {"steps": 0}),
        ("cw", {"binary_search_steps": 0}),
        ("cw", {"initial_const": 0.0}),
        ("cw", {"confidence": -1.0}),
        ("cw", {"lr": 0.0}),
        ("deepfool", {"steps": 0}),
        ("deepfool", {"overshoot": -0.1}),
        ("deepfool", {"candidates": 1}),
        ("fmn", {"steps": 0}),
        ("fmn", {"alpha_init": 1.0, "alpha_final": 2.0}),
        ("fmn", {"gamma_init": 1.5}),
        ("lbfgs", {"max_iter": 0}),
        ("lbfgs", {"history": 0}),
        ("lbfgs", {"initial_const": -1.0}),
        ("cw", {"norm": "linf"}),
        ("lbfgs", {"norm": "l1"}),
    ],
)
def test_bad_parameters_are_rejected(name, params):
    with pytest.raises(ValueError, match=name):
        create(name, **params)


def test_deepfool_refuses_targets(digits_model, digits_batch):
    images, labels = digits_batch
    with pytest.raises(ValueError, match="targeted"):
        create("deepfool")(digits_model, images, labels, 1.0, targets=labels)
