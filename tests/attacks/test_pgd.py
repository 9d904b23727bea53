"""FGSM and PGD: the peer cross-check with torchattacks, early stop, restarts,
targeted attacks, strength, parameter validation, and the losses they use.

torchattacks draws its random start from the global RNG; the kernels draw theirs
from a ``torch.Generator`` seeded with ``seed``. On CPU a generator seeded ``s``
yields the same stream as the global RNG after ``torch.manual_seed(s)``, so when
both attack the same (correctly classified) samples their starts coincide and the
comparison can be made per sample, not only in robust accuracy.
"""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import Tensor, nn

from sweep.attacks import UnknownAttackError, create, losses
from sweep.attacks.norms import lp_norm, within
from sweep.attacks.pgd import PGD, sparse_l1_direction
from sweep.data.digits import load_digits_split

STEPS = 20


@pytest.fixture(scope="module")
def test128() -> tuple[Tensor, Tensor]:
    data = load_digits_split("test").take(128)
    return data.images, data.labels


def correct_only(model: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The samples the model gets right: the kernels never attack the others."""
    with torch.no_grad():
        ok = model(images).argmax(1) == labels
    return images[ok], labels[ok]


def fooled(model: nn.Module, adv: Tensor, labels: Tensor) -> Tensor:
    """Re-run the model on adversarials: the only way a peer's result is scored."""
    with torch.no_grad():
        return model(adv).argmax(1) != labels


def run_peer(attack, images: Tensor, labels: Tensor, seed: int) -> Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return attack(images, labels)


def peer_start(norm: str, images: Tensor, eps: float, seed: int) -> Tensor:
    """torchattacks' PGD / PGDL2 random start, replayed with its own draws."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if norm == "linf":
            delta = torch.empty_like(images).uniform_(-eps, eps)
        else:
            delta = torch.empty_like(images).normal_()
            n = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            delta *= torch.zeros_like(n).uniform_(0, 1) / n * eps
    return (images + delta).clamp(0, 1)


class CountingModel(nn.Module):
    """Wraps a model and records the batch size of every forward pass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        return self.net(x)


class RandomStartOnly(nn.Module):
    """Two classes; class 1 iff pixel 0 exceeds 0.54, with a zero gradient everywhere.

    Gradient steps cannot move (``sign(0) = 0``), so only the random start can fool
    it: with images at 0.5 and an L-inf eps of 0.1, each start fools a sample with
    probability 0.3, independently per sample and per restart.
    """

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        hit = (flat[:, 0] > 0.54).to(x.dtype)
        # the zero term keeps the input in the graph, with a zero gradient
        return torch.stack([1 - hit, hit], dim=1) + 0.0 * flat.sum(1, keepdim=True)


# -- FGSM ---------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2])
def test_fgsm_agrees_with_torchattacks_per_sample(digits_model, test128, eps):
    images, labels = test128
    x, y = correct_only(digits_model, images, labels)
    theirs = torchattacks.FGSM(digits_model, eps=eps)(x, y)
    ours = create("fgsm")(digits_model, x, y, eps)
    torch.testing.assert_close(ours.adv, theirs, atol=1e-6, rtol=0)
    assert torch.equal(ours.success, fooled(digits_model, theirs, y))
    # on the whole batch, samples already misclassified come back untouched and fooled
    full = create("fgsm")(digits_model, images, labels, eps)
    wrong = full.clean_pred != labels
    assert bool(wrong.any()) and bool(full.success[wrong].all())
    assert torch.equal(full.adv[wrong], images[wrong])


def test_fgsm_l2_is_one_normalised_gradient_step(digits_model, test128):
    x, y = correct_only(digits_model, *test128)
    eps = 1.0
    xg = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(digits_model(xg), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xg)
    unit = grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    expected = (x + eps * unit).clamp(0, 1)
    out = create("fgsm", norm="l2")(digits_model, x, y, eps)
    torch.testing.assert_close(out.adv, expected, atol=1e-5, rtol=0)
    assert bool(within(out.norm, torch.full_like(out.norm, eps)).all())


# -- PGD against the peer ---------------------------------------------------------------
@pytest.mark.parametrize("model_name", ["digits_model", "digits_model_at"])
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("linf", 0.15), ("l2", 0.5), ("l2", 1.0)])
def test_pgd_never_weaker_than_torchattacks(request, test128, model_name, norm, eps):
    model = request.getfixturevalue(model_name)
    x, y = correct_only(model, *test128)
    alpha = 2.5 * eps / STEPS  # the same budget: eps, steps, step size
    peer_cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    peer = peer_cls(model, eps=eps, alpha=alpha, steps=STEPS, random_start=True)
    theirs = fooled(model, run_peer(peer, x, y, seed=0), y)
    ours = create("pgd", norm=norm, steps=STEPS, step_size=alpha)(model, x, y, eps, seed=0)
    # robust accuracy: ours <= theirs, one sample of slack for differing random starts
    assert int((~ours.success).sum()) <= int((~theirs).sum()) + 1
    ours_start = PGD(norm=norm)._start(
        x, torch.full((len(y),), eps), torch.Generator().manual_seed(0)
    )
    if torch.allclose(ours_start, peer_start(norm, x, eps, seed=0), atol=1e-6):
        # same start, same steps: every sample the peer fools, ours fools too
        missed = theirs & ~ours.success
        assert not bool(missed.any()), f"peer fooled {missed.nonzero().flatten().tolist()}"


def test_pgd_default_step_size_is_madry_rule_of_thumb():
    atk = create("pgd")
    assert atk.steps == 20 and atk.rel_stepsize == pytest.approx(2.5 / 20)
    assert create("pgd", steps=50).rel_stepsize == pytest.approx(2.5 / 50)
    assert atk.random_start is True and atk.restarts == 1 and atk.loss == "ce"


# -- early stop with batch compaction -------------------------------------------------
def test_early_stop_stops_paying_for_fooled_samples(digits_model, test128):
    images, labels = test128
    with torch.no_grad():
        attacked = int((digits_model(images).argmax(1) == labels).sum())
    runs = {}
    for early_stop in (True, False):
        counting = CountingModel(digits_model)
        out = create("pgd", steps=STEPS, early_stop=early_stop)(
            counting, images, labels, 0.15, seed=0
        )
        runs[early_stop] = (out, counting.sizes)
    (fast, fast_sizes), (full, full_sizes) = runs[True], runs[False]
    batch = len(labels)
    # without compaction: clean check + every attacked sample at every step + verify
    assert full_sizes == [batch] + [attacked] * STEPS + [batch]
    attack_sizes = fast_sizes[1:-1]
    assert attack_sizes[0] == attacked
    assert attack_sizes == sorted(attack_sizes, reverse=True), "the active batch only shrinks"
    assert attack_sizes[-1] >= int((~fast.success & (fast.clean_pred == labels)).sum())
    assert sum(attack_sizes) < 0.5 * attacked * STEPS
    # the same result (samples do not interact in eval mode), at a fraction of the cost
    assert torch.equal(fast.success, full.success)
    torch.testing.assert_close(fast.adv, full.adv, atol=1e-5, rtol=0)


# -- restarts -------------------------------------------------------------------------
def test_restarts_keep_the_best_per_sample():
    model = RandomStartOnly()
    images = torch.full((200, 1, 8, 8), 0.5)
    labels = torch.zeros(200, dtype=torch.long)
    one = create("pgd", steps=2, restarts=1)(model, images, labels, 0.1, seed=3)
    five = create("pgd", steps=2, restarts=5)(model, images, labels, 0.1, seed=3)
    rate_one, rate_five = one.success.float().mean(), five.success.float().mean()
    assert 0.2 < rate_one < 0.4  # one start fools ~30%
    # per-sample best over 5 restarts: ~1 - 0.7^5 = 83%; the best single restart
    # (a per-batch choice) would stay near 30%
    assert rate_five > 0.7
    # the first restart draws the same starts as a single run: nothing is lost
    assert bool((five.success >= one.success).all())


def test_a_restart_fooled_by_its_last_iterate_keeps_it(digits_model, test128):
    """A sample fooled only by the final iterate of an earlier restart keeps that
    iterate. It used to be marked fooled without recording it: it came back as the
    clean image, later restarts skipped it, and it counted as robust."""
    images, labels = test128
    # steps=1: the loop checks the random start; only the one step's result is the
    # "last iterate", checked after the loop
    one = create("pgd", steps=1, restarts=1)(digits_model, images, labels, 0.1, seed=0)
    two = create("pgd", steps=1, restarts=2)(digits_model, images, labels, 0.1, seed=0)
    start_only = create("pgd", steps=1, restarts=1)
    start_only.steps = 0  # the random starts alone, same draws
    starts = start_only(digits_model, images, labels, 0.1, seed=0)
    by_last_iterate = one.success & ~starts.success
    assert int(by_last_iterate.sum()) > 0  # the case exists on these samples
    # restart 0 of `two` draws what `one` draws: whatever `one` fools, `two` fools
    assert bool((two.success >= one.success).all())
    assert not bool((two.robust & ~one.robust).any())


def test_zero_gradient_freezes_coordinates():
    """sign(0) = 0, as the reference: without a random start nothing moves."""
    model = RandomStartOnly()
    images = torch.full((8, 1, 8, 8), 0.5)
    labels = torch.zeros(8, dtype=torch.long)
    out = create("pgd", random_start=False)(model, images, labels, 0.1)
    assert torch.equal(out.adv, images)


# -- targeted, strength, unbounded --------------------------------------------------------
@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 3.0)])
def test_targeted_pgd_reaches_targets(digits_model, test128, norm, eps):
    x, y = correct_only(digits_model, *test128)
    targets = (y + 1) % 10
    out = create("pgd", norm=norm, steps=40)(digits_model, x, y, eps, targets=targets)
    with torch.no_grad():
        pred = digits_model(out.adv).argmax(1)
    assert torch.equal(out.success, pred == targets)
    assert out.success.float().mean() >= 0.95


def test_unbounded_linf_pgd_reaches_zero_accuracy(digits_model, test128):
    images, labels = test128
    out = create("pgd", norm="linf")(digits_model, images, labels, 1.0)
    assert bool(out.success.all()), f"{int((~out.success).sum())} samples survive eps = 1"
    # eps = inf is the same ball as eps = 1 intersected with the box
    inf = create("pgd", norm="linf")(digits_model, images, labels, float("inf"))
    assert torch.equal(inf.adv, out.adv)


def test_l1_pgd_beats_noise_and_stays_sparse(digits_model, test128):
    x, y = correct_only(digits_model, *test128)
    pgd = create("pgd", norm="l1")(digits_model, x, y, 4.0)
    noise = create("noise", norm="l1")(digits_model, x, y, 4.0)
    assert pgd.success.float().mean() > noise.success.float().mean() + 0.2
    assert bool(within(lp_norm(pgd.adv - x, "l1"), torch.full((len(y),), 4.0)).all())


def test_sparse_l1_direction_skips_blocked_coordinates():
    grad = torch.tensor([[[[5.0, -4.0, 3.0, 0.5]]]])
    adv = torch.tensor([[[[1.0, 0.5, 0.5, 0.5]]]])  # coordinate 0 is pinned at 1
    d = sparse_l1_direction(grad, adv, k=2)
    assert torch.equal(d, torch.tensor([[[[0.0, -0.5, 0.5, 0.0]]]]))
    assert float(d.abs().sum()) == pytest.approx(1.0)
    # a zero gradient gives no step at all
    assert torch.equal(
        sparse_l1_direction(torch.zeros_like(grad), adv, k=2), torch.zeros_like(grad)
    )


# -- parameters ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"restarts": 0}, "restarts"),
        ({"rel_stepsize": 0.1, "step_size": 0.01}, "not both"),
        ({"rel_stepsize": -1.0}, "rel_stepsize"),
        ({"step_size": float("inf")}, "step_size"),
        ({"loss": "hinge"}, "valid: ce, dlr, margin"),
        ({"l1_sparsity": 1.0}, "l1_sparsity"),
        ({"norm": "l0"}, "norm"),
    ],
)
def test_pgd_rejects_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        create("pgd", **params)


def test_fgsm_has_no_iterative_parameters():
    with pytest.raises(UnknownAttackError, match="steps"):
        create("fgsm", steps=5)
    with pytest.raises(ValueError, match="norm"):
        create("fgsm", norm="l1")


# -- losses ------------------------------------------------------------------------
def test_margin_is_positive_exactly_when_fooled():
    logits = torch.tensor([[3.0, 1.0, 0.0], [1.0, 4.0, 0.0]])
    labels = torch.tensor([0, 0])
    m = losses.margin(logits, labels)
    torch.testing.assert_close(m, torch.tensor([-2.0, 3.0]))
    targets = torch.tensor([2, 1])
    torch.testing.assert_close(losses.margin(logits, labels, targets), torch.tensor([-3.0, 3.0]))


def test_ce_targeted_is_negated_target_ce():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    labels, targets = torch.zeros(5, dtype=torch.long), torch.full((5,), 2)
    expected = -nn.functional.cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(losses.ce(logits, labels, targets), expected)


def test_dlr_matches_the_paper_and_is_scale_invariant():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0], [1.0, 6.0, 2.0, 0.5]])
    labels = torch.tensor([0, 0])
    # -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)
    torch.testing.assert_close(losses.dlr(logits, labels), torch.tensor([-1 / 4, 5 / 5]))
    targets = torch.tensor([3, 1])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    torch.testing.assert_close(
        losses.dlr(logits, labels, targets), torch.tensor([-5 / 4.5, 5 / 5.25])
    )
    torch.testing.assert_close(losses.dlr(3 * logits + 7, labels), losses.dlr(logits, labels))


def test_dlr_needs_enough_classes():
    with pytest.raises(ValueError, match="at least 3 classes"):
        losses.dlr(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 4 classes"):
        losses.dlr(
            torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
        )
    losses.dlr(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))  # 3 suffice untargeted
