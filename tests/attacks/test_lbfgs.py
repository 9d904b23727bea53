"""The batched projected L-BFGS solver behind the ``lbfgs`` attack, checked against
scipy's L-BFGS-B and the dense BFGS formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweep.attacks.lbfgs import minimize_in_box, szegedy_loss, two_loop

scipy_optimize = pytest.importorskip("scipy.optimize")


def _random_qp(n: int, dim: int, seed: int):
    """Per-row strictly convex quadratics ``0.5 z'A z - b'z`` with optima partly outside the box."""
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(n, dim, dim, generator=gen, dtype=torch.float64)
    a = m @ m.transpose(1, 2) / dim + 0.1 * torch.eye(dim, dtype=torch.float64)
    b = torch.randn(n, dim, generator=gen, dtype=torch.float64) * 2
    return a, b


def test_box_constrained_optimum_matches_scipy():
    n, dim = 6, 12
    a, b = _random_qp(n, dim, seed=0)
    calls = []

    def fun(z, rows):
        calls.append(rows.numel())
        az = torch.einsum("nij,nj->ni", a[rows], z)
        return 0.5 * (z * az).sum(1) - (b[rows] * z).sum(1), az - b[rows]

    start = torch.full((n, dim), 0.5, dtype=torch.float64)
    ours = minimize_in_box(fun, start, max_iter=200)
    for i in range(n):
        ai, bi = a[i].numpy(), b[i].numpy()
        ref, _, _ = scipy_optimize.fmin_l_bfgs_b(
            lambda z, ai=ai, bi=bi: (0.5 * z @ ai @ z - bi @ z, ai @ z - bi),
            np.full(dim, 0.5),
            bounds=[(0.0, 1.0)] * dim,
            pgtol=1e-10,
            factr=10,
        )
        np.testing.assert_allclose(ours[i].numpy(), ref, atol=1e-4)
    assert bool(((ours >= 0) & (ours <= 1)).all())
    # some bounds are active at the optimum, or the test would not test the box
    assert bool(((ours == 0) | (ours == 1)).any())
    # rows that converge leave the batch: later calls are smaller
    assert min(calls) < n


def test_two_loop_equals_the_dense_bfgs_inverse_hessian():
    gen = torch.Generator().manual_seed(1)
    dim, m = 5, 3
    s = torch.randn(1, m, dim, generator=gen, dtype=torch.float64)
    hess = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    hess = hess @ hess.T + torch.eye(dim, dtype=torch.float64)
    y = s @ hess  # curvature pairs of a quadratic: y = H s, so s.y > 0
    g = torch.randn(1, dim, generator=gen, dtype=torch.float64)
    # dense recursion: H_{k+1} = V' H_k V + rho s s', started from gamma * I
    gamma = float(s[0, -1] @ y[0, -1] / (y[0, -1] @ y[0, -1]))
    h = gamma * torch.eye(dim, dtype=torch.float64)
    for i in range(m):
        si, yi = s[0, i], y[0, i]
        rho = 1.0 / float(si @ yi)
        v = torch.eye(dim, dtype=torch.float64) - rho * torch.outer(yi, si)
        h = v.T @ h @ v + rho * torch.outer(si, si)
    torch.testing.assert_close(two_loop(g, s, y)[0], h @ g[0])


def test_two_loop_skips_pairs_without_curvature():
    g = torch.tensor([[1.0, -2.0, 0.5]])
    empty = torch.zeros(1, 4, 3)
    # no usable pair: H = I, the direction is the gradient itself
    torch.testing.assert_close(two_loop(g, empty, empty), g)


def test_untargeted_loss_is_minus_log_of_not_label():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, -1.0]])
    labels = torch.tensor([0, 2])
    p = logits.softmax(1)
    expected = -torch.log(1 - p[torch.arange(2), labels])
    torch.testing.assert_close(szegedy_loss(logits, labels, None), expected)
    targets = torch.tensor([1, 0])
    expected_t = -torch.log(p[torch.arange(2), targets])
    torch.testing.assert_close(szegedy_loss(logits, labels, targets), expected_t)
