"""FAB and FAB-T (sweep/attacks/fab.py): the projections against a brute-force
optimum, parity with torchattacks' port of the reference, and what FAB-T's one
unbounded run means at each epsilon.

The registry-wide contract (bounds, verification, per-sample eps, seeds, curves,
targeted verdicts) runs from test_contract.py and test_targeted_robust.py.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from sweep.attacks import create
from sweep.attacks.fab import project_onto_hyperplane_box
from sweep.attacks.norms import lp_norm
from sweep.data.digits import load_digits_split

# -- the projection onto {<w, z> = b} intersected with [0, 1]^D ------------------------


def _brute_l2(t: torch.Tensor, w: torch.Tensor, gap: float) -> float | None:
    """Exact minimum L2 norm by enumerating active sets: each coordinate at its lower
    bound, its upper bound, or free (KKT: free coordinates are ``lam * w_i``)."""
    best = None
    lo, hi = -t, 1 - t
    for states in itertools.product(range(3), repeat=len(t)):
        s = torch.tensor(states)
        d = torch.where(s == 0, lo, hi)
        free = (s == 2) & (w != 0)
        d = torch.where(s == 2, torch.zeros_like(d), d)
        rest = gap - float((w * d).sum())
        wf2 = float((w[free] ** 2).sum())
        if wf2 == 0:
            if abs(rest) > 1e-12:
                continue
        else:
            d[free] = rest / wf2 * w[free]
        if bool((d < lo - 1e-12).any()) or bool((d > hi + 1e-12).any()):
            continue
        n = float(d.norm())
        best = n if best is None else min(best, n)
    return best


def _brute(t: torch.Tensor, w: torch.Tensor, b: float, norm: str) -> float | None:
    """The optimum ``min ||d||`` subject to ``<w, t + d> = b``, ``t + d`` in the box,
    or None where infeasible: linear programs for L1 and L-inf, active sets for L2."""
    gap = b - float((w * t).sum())
    if norm == "l2":
        return _brute_l2(t, w, gap)
    linprog = pytest.importorskip("scipy.optimize").linprog
    tn, wn, dim = t.numpy(), w.numpy(), len(t)
    if norm == "l1":  # d = p - m, p, m >= 0: min sum(p + m)
        res = linprog(
            [1.0] * (2 * dim),
            A_eq=[list(wn) + list(-wn)],
            b_eq=[gap],
            bounds=[(0, 1 - v) for v in tn] + [(0, v) for v in tn],
        )
    else:  # variables (d, s): min s with -s <= d_i <= s
        a_ub = [[0.0] * (dim + 1) for _ in range(2 * dim)]
        for i in range(dim):
            a_ub[i][i], a_ub[i][dim] = 1.0, -1.0
            a_ub[dim + i][i], a_ub[dim + i][dim] = -1.0, -1.0
        res = linprog(
            [0.0] * dim + [1.0],
            A_ub=a_ub,
            b_ub=[0.0] * (2 * dim),
            A_eq=[[*wn, 0.0]],
            b_eq=[gap],
            bounds=[(-v, 1 - v) for v in tn] + [(0, None)],
        )
    return float(res.fun) if res.status == 0 else None


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_projection_is_the_brute_force_optimum(norm):
    """On 100 tiny random problems (float64; saturated pixels and zero weights
    included): ours lands on the hyperplane, inside the box, at the optimal norm; where
    the hyperplane misses the box, every coordinate goes as far as it helps."""
    gen = torch.Generator().manual_seed(0)
    infeasible = 0
    for trial in range(100):
        dim = int(torch.randint(1, 5, (), generator=gen))
        t = torch.rand(dim, generator=gen, dtype=torch.float64)
        if trial % 3 == 0:
            t = (t > 0.5).double()  # pixels at 0 or 1, as on digits
        w = torch.randn(dim, generator=gen, dtype=torch.float64)
        if trial % 5 == 0:
            w[0] = 0.0
        b = (
            float((w * torch.rand(dim, generator=gen, dtype=torch.float64)).sum())
            * 2
            * float(torch.rand((), generator=gen))
        )
        d = project_onto_hyperplane_box(
            t[None], w[None], torch.tensor([b], dtype=torch.float64), norm
        )[0]
        assert bool((d[w == 0] == 0).all())
        assert float((t + d).min()) >= -1e-12 and float((t + d).max()) <= 1 + 1e-12
        opt = _brute(t, w, b, norm)
        if opt is None:
            infeasible += 1
            up = torch.sign(w) * (1.0 if b > float((w * t).sum()) else -1.0)
            corner = torch.where(up > 0, 1 - t, -t).masked_fill(w == 0, 0.0)
            torch.testing.assert_close(d, corner)
            continue
        assert abs(float((w * (t + d)).sum()) - b) < 1e-9, (t, w, b, d)
        assert float(lp_norm(d[None], norm)) == pytest.approx(opt, abs=1e-7), (t, w, b, d)
    assert 3 <= infeasible <= 40  # both regimes were exercised


def test_projection_leaves_a_point_on_the_plane_alone():
    t = torch.tensor([[0.2, 0.7, 0.0]])
    w = torch.tensor([[1.0, -2.0, 0.5]])
    b = (w * t).sum(1)
    for norm in ("linf", "l2", "l1"):
        assert torch.equal(project_onto_hyperplane_box(t, w, b, norm), torch.zeros_like(t))


# -- parity with torchattacks' FAB (a port of the reference) ---------------------------


@pytest.fixture(scope="module")
def correct24(digits_model):
    data = load_digits_split("test").take(32)
    with torch.no_grad():
        keep = digits_model(data.images).argmax(1) == data.labels
    return data.images[keep][:24], data.labels[keep][:24]


def _fooled_norms(model, images, labels, adv, norm):
    with torch.no_grad():
        fooled = model(adv).argmax(1) != labels
    return fooled, lp_norm(adv - images, norm)


@pytest.mark.parametrize("steps", [4, 20])
@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_parity_with_torchattacks(norm, steps, digits_model, correct24):
    """Same algorithm, no randomness with one restart: per sample the same minimal
    norms up to float noise (the projections are computed differently, so a near tie
    between two classes' boundaries may send one sample another way). After 20 steps
    both have converged; after 4 the norms still depend on every step's rule."""
    torchattacks = pytest.importorskip("torchattacks")
    images, labels = correct24
    out = create("fab", norm=norm, steps=steps)(digits_model, images, labels, float("inf"))
    peer = torchattacks.FAB(
        digits_model, norm={"linf": "Linf", "l2": "L2", "l1": "L1"}[norm], eps=1e9, steps=steps
    )
    # torchattacks' perturb() has no L1 branch (UnboundLocalError): call its single run
    adv = peer.attack_single_run(images, labels) if norm == "l1" else peer(images, labels)
    fooled, norms = _fooled_norms(digits_model, images, labels, adv, norm)
    assert int(out.success.sum()) >= int(fooled.sum()) - 1
    both = out.success & fooled
    assert int(both.sum()) >= len(labels) - 2
    same = (out.norm[both] - norms[both]).abs() <= 1e-3 * norms[both]
    assert int(same.sum()) >= int(both.sum()) - 2, (out.norm[both], norms[both])
    assert float(out.norm[both].median()) <= 1.01 * float(norms[both].median())


# -- FAB-T ------------------------------------------------------------------------------


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.5)])
def test_fab_t_curve_is_autoattacks_fab_t_at_each_eps(norm, eps, digits_model, correct24):
    """AutoAttack's FAB-T at a budget attacks each target only on the samples earlier
    targets left robust; ours runs every target once, unbounded. With one restart the
    searches are deterministic, so one run gives the same verdicts at every epsilon:
    checked against finite-budget calls and against torchattacks' port (both over the
    top 3 other classes, to keep the test fast; AutoAttack uses 9)."""
    torchattacks = pytest.importorskip("torchattacks")
    images, labels = correct24[0][:16], correct24[1][:16]
    atk = create("fab-t", norm=norm, steps=20, n_target_classes=3)
    epsilons = [eps / 2, eps, 2 * eps]
    cur = atk.curve(digits_model, images, labels, epsilons)
    for k, e in enumerate(epsilons):
        finite = atk(digits_model, images, labels, e)
        assert int((finite.success != cur.success[k]).sum()) <= 1, (
            e,
            finite.success,
            cur.success[k],
        )
    peer = torchattacks.FAB(
        digits_model,
        norm={"linf": "Linf", "l2": "L2"}[norm],
        eps=eps,
        steps=20,
        multi_targeted=True,
        n_classes=4,  # its targets: the 2nd to n_classes-th logits
    )
    fooled, norms = _fooled_norms(digits_model, images, labels, peer(images, labels), norm)
    peer_robust = int((~fooled | (norms > eps * (1 + 1e-5))).sum())
    ours_robust = int(cur.robust[1].sum())
    assert ours_robust <= peer_robust + 1, (ours_robust, peer_robust)
    assert peer_robust < len(labels)  # the budget is one where the attack matters


def test_fab_t_targets_are_the_top_classes(digits_model, correct24):
    """With one target, FAB-T only crosses towards the runner-up class; the adversarial
    lands there on (almost) every sample, and more targets never do worse."""
    images, labels = correct24
    one = create("fab-t", norm="l2", steps=20, n_target_classes=1)(
        digits_model, images, labels, float("inf")
    )
    with torch.no_grad():
        logits = digits_model(images)
    runner_up = logits.scatter(1, labels[:, None], float("-inf")).argmax(1)
    assert int((one.success & (one.pred == runner_up)).sum()) >= int(one.success.sum()) - 2
    three = create("fab-t", norm="l2", steps=20, n_target_classes=3)(
        digits_model, images, labels, float("inf")
    )
    assert bool(three.success[one.success].all())
    assert bool((three.norm[one.success] <= one.norm[one.success] + 1e-6).all())


def test_targeted_fab_reaches_the_least_likely_class(digits_model, correct24):
    """The rival class is the highest other class at the iterate: with the reference's
    fixed ``Z_t - Z_y`` the least likely class is reached on 19 of 62 digits-cnn
    samples (L2, 100 steps; docs/attacks-minimal.md), ours on 60."""
    images, labels = correct24[0][:16], correct24[1][:16]
    with torch.no_grad():
        logits = digits_model(images)
    targets = logits.scatter(1, labels[:, None], float("inf")).argmin(1)
    out = create("fab", norm="l2", steps=50)(
        digits_model, images, labels, float("inf"), targets=targets
    )
    assert int(out.success.sum()) >= 14, out.success


def test_targeted_fab_reaches_given_targets(digits_model, correct24):
    images, labels = correct24
    targets = (labels + 5) % 10
    out = create("fab", norm="l2", steps=30)(
        digits_model, images, labels, float("inf"), targets=targets
    )
    assert int(out.success.sum()) >= len(labels) - 1
    assert torch.equal(out.success, out.pred == targets)
    untargeted = create("fab", norm="l2", steps=30)(digits_model, images, labels, float("inf"))
    # one given class is at least as far as the nearest one (up to search noise)
    assert float(out.norm[out.success].median()) >= 0.95 * float(untargeted.norm.median())


# -- restarts and the final search --------------------------------------------------


def test_restarts_and_final_search_never_make_a_sample_worse(digits_model, correct24):
    images, labels = correct24[0][:12], correct24[1][:12]
    plain = create("fab", norm="linf", steps=10)(digits_model, images, labels, float("inf"), seed=1)
    assert bool(plain.success.all())
    restarts = create("fab", norm="linf", steps=10, restarts=3)(
        digits_model, images, labels, float("inf"), seed=1
    )
    search = create("fab", norm="linf", steps=10, final_search=3)(
        digits_model, images, labels, float("inf"), seed=1
    )
    for other in (restarts, search):
        assert bool(other.success.all())
        assert bool((other.norm <= plain.norm + 1e-6).all())
    # the random starts come from the seed alone
    again = create("fab", norm="linf", steps=10, restarts=3)(
        digits_model, images, labels, float("inf"), seed=1
    )
    assert torch.equal(again.adv, restarts.adv)


def test_restarts_follow_the_same_path_with_a_finite_budget(digits_model, correct24):
    """The restart radius ignores the call's eps and the noise is drawn for the whole
    batch, so a finite budget only stops a sample early: a sample it never fools within
    eps ends where the unbounded run ends, and the finite call is never weaker than
    the unbounded run's curve, with restarts too."""
    images, labels = correct24[0][:12], correct24[1][:12]
    # few steps per run, so that the random restarts change the outcome
    atk = create("fab", norm="l2", steps=2, restarts=4)
    eps = 0.5

    def kernel(budget: float) -> torch.Tensor:  # the search itself, before projection
        gen = torch.Generator().manual_seed(2)
        return atk._run(digits_model, images, labels, torch.full((12,), budget), None, gen)

    unbounded, finite = kernel(float("inf")), kernel(eps)
    far = lp_norm(finite - images, "l2") > eps
    assert 0 < int(far.sum()) < len(labels)  # a budget where it matters
    assert torch.allclose(finite[far], unbounded[far], atol=1e-5)
    cur = atk.curve(digits_model, images, labels, [eps], strategy="independent", seed=2)
    out = atk(digits_model, images, labels, eps, seed=2)
    assert bool((out.success >= cur.success[0]).all())


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("fab", {"steps": 0}),
        ("fab", {"restarts": 0}),
        ("fab", {"alpha_max": 1.5}),
        ("fab", {"eta": 0.5}),
        ("fab", {"beta": 1.0}),
        ("fab", {"restart_eps": 0.0}),
        ("fab", {"n_target_classes": -1}),
        ("fab", {"final_search": -1}),
        ("fab", {"norm": "l0"}),
        ("fab-t", {"n_target_classes": 0}),
    ],
)
def test_bad_parameters_are_rejected(name, params):
    with pytest.raises(ValueError, match=name):
        create(name, **params)


def test_targets_and_top_k_targets_do_not_mix(digits_model, digits_batch):
    images, labels = digits_batch
    targets = (labels + 1) % 10
    with pytest.raises(ValueError, match="either targets"):
        create("fab", n_target_classes=3, steps=2)(
            digits_model, images, labels, 1.0, targets=targets
        )
    with pytest.raises(ValueError, match="targeted"):
        create("fab-t", steps=2)(digits_model, images, labels, 1.0, targets=targets)
