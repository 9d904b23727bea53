"""L-BFGS attack (Szegedy et al.): box-constrained quasi-Newton search, per-sample c.

Reference: C. Szegedy, W. Zaremba, I. Sutskever, J. Bruna, D. Erhan, I. Goodfellow
and R. Fergus, "Intriguing properties of neural networks", ICLR 2014,
arXiv:1312.6199, section 4.1: "minimize ``c|r| + loss_f(x + r, l)`` subject to
``x + r`` in [0, 1]^m" with box-constrained L-BFGS, and a line search on c.

What we minimise, per sample, over the adversarial image ``x' = x + r`` in [0, 1]:

    ||r||_2^2 + c * loss(x')

This is the paper's objective divided by its c (same minimisers, with our
``c = 1 / c_paper``), with the squared L2 distance as in Foolbox's port. The paper asks
for the c "for which the minimiser satisfies f(x + r) = l"; a small ``c`` here
keeps ``r`` small, so the search wants the **smallest c whose minimiser fools**
(the largest ``c_paper``), which is the smallest-norm adversarial along the path.

- ``loss``: targeted (``targets`` given, as in the paper), the cross-entropy of the
  target; untargeted, ``-log(1 - p_y)`` (the cross-entropy of "any class but the
  label", ``logsumexp(Z) - logsumexp_{j != y}(Z)``), which is bounded below by 0 and
  keeps pushing ``p_y`` down whichever other class gains (plain ``-CE(y)`` is
  unbounded below; Foolbox instead targets the runner-up class).
- search on c, per sample, as Carlini-Wagner's: start at ``initial_const`` 1e-2;
  multiply by 10 until the minimiser fools, then bisect between the largest
  failing and the smallest fooling c; ``binary_search_steps`` solves in all (default 10).
- each solve starts at the clean image and runs at most ``max_iter`` (default 100)
  iterations of the batched solver below.
- every point the solver evaluates that fools (argmax) is a candidate; the
  smallest-L2 one per sample is returned. With a finite ``eps`` a sample stops once
  it holds a candidate within ``eps``.

The solver is a **projected L-BFGS**, not scipy's L-BFGS-B: batched in torch with a
per-sample history of ``history`` (default 10) pairs, it (1) finds the variables
held at a bound (``x' = 0`` with a positive gradient, ``x' = 1`` with a negative
one), (2) runs the L-BFGS two-loop recursion on the free variables only (pairs
restricted to them, as the projected quasi-Newton method of Kim, Sra and Dhillon,
"Tackling Box-Constrained Optimization via a New Projected Quasi-Newton Approach",
SIAM J. Sci. Comput. 2010), (3) backtracks along the projected path
``clip(x' + t d, 0, 1)`` from ``t = 1`` (the first iteration from
``t = 1 / ||d||_2``, as L-BFGS-B) until the Armijo condition holds (constant 1e-4;
each retry at the minimiser of the quadratic through the last trial, kept within
[0.1 t, 0.5 t]; at most 10 trials). A pair is stored when its curvature
``s.y > 1e-10 y.y``. A sample stops when its projected gradient's
largest entry is below 1e-5, its relative decrease below 2.2e-9 (scipy's
``pgtol`` and ``factr = 1e7``), or its line search fails; stopped samples leave
the batch. ``L-BFGS-B``'s generalised Cauchy point and subspace minimisation are
not reproduced; the optimum of a convex box-constrained problem is the same
(``tests/attacks/test_lbfgs.py`` checks that against scipy).

Memory: the history holds ``2 * history`` copies of the active images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sweep.attacks.base import MinimalAttack
from sweep.attacks.losses import other_logits
from sweep.attacks.norms import Norm
from sweep.attacks.params import Count, Positive

# Solver constants (see the module docstring).
_ARMIJO = 1e-4
_MAX_LINE_SEARCH = 10
_PGTOL = 1e-5
_FTOL = 2.2e-9
_CURVATURE = 1e-10
# "no fooling c seen yet" (as in Carlini-Wagner's search)
_NO_UPPER = 1e10

# fun(points [n, D], rows [n]) -> (objective [n], gradient [n, D]); ``rows`` say which
# samples of the caller's batch the points belong to.
Objective = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def two_loop(grad: Tensor, s_hist: Tensor, y_hist: Tensor) -> Tensor:
    """``H @ grad`` for the L-BFGS inverse-Hessian estimate, batched.

    ``grad`` ``[n, D]``; ``s_hist``, ``y_hist`` ``[n, m, D]``, oldest pair first; a pair
    with ``s.y <= 0`` (empty, or no curvature on the free variables) is skipped.
    """
    sy = (s_hist * y_hist).sum(dim=2)
    usable = sy > 0
    rho = torch.where(usable, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy))
    m = s_hist.shape[1]
    alpha = torch.zeros_like(sy)
    q = grad.clone()
    for i in reversed(range(m)):
        a = rho[:, i] * (s_hist[:, i] * q).sum(dim=1)
        alpha[:, i] = a
        q = q - a.unsqueeze(1) * y_hist[:, i]
    yy = (y_hist[:, -1] * y_hist[:, -1]).sum(dim=1)
    scale = torch.where(usable[:, -1], sy[:, -1] / yy.clamp_min(1e-30), torch.ones_like(yy))
    r = q * scale.unsqueeze(1)
    for i in range(m):
        b = rho[:, i] * (y_hist[:, i] * r).sum(dim=1)
        r = r + s_hist[:, i] * (alpha[:, i] - b).unsqueeze(1)
    return r


def minimize_in_box(fun: Objective, start: Tensor, max_iter: int, history: int = 10) -> Tensor:
    """Minimise ``fun`` per row over the box [0, 1]^D from ``start`` ``[n, D]``; projected L-BFGS.

    Every row is its own problem (own history, step size and stopping); rows that
    stop leave the batch. Returns the final points ``[n, D]``.
    """
    n = start.shape[0]
    rows = torch.arange(n, device=start.device)
    z = start.clone()
    out = z.clone()
    f, g = fun(z, rows)
    s_hist = z.new_zeros(n, history, z.shape[1])
    y_hist = z.new_zeros(n, history, z.shape[1])
    stored = torch.zeros(n, dtype=torch.long, device=z.device)

    for _ in range(max_iter):
        free = ~(((z <= 0) & (g > 0)) | ((z >= 1) & (g < 0)))
        pg = g * free
        going = pg.abs().amax(dim=1) > _PGTOL
        if not bool(going.all()):
            out[rows] = z
            rows, z, f, g, free, pg = (
                rows[going],
                z[going],
                f[going],
                g[going],
                free[going],
                pg[going],
            )
            s_hist, y_hist, stored = s_hist[going], y_hist[going], stored[going]
            if rows.numel() == 0:
                break
        mask = free.unsqueeze(1)
        d = -two_loop(pg, s_hist * mask, y_hist * mask) * free
        slope = (g * d).sum(dim=1)
        uphill = ~(slope < 0)  # safeguard: fall back to the projected gradient
        d = torch.where(uphill.unsqueeze(1), -pg, d)
        step = torch.where(stored == 0, 1.0 / d.norm(dim=1).clamp_min(1e-12), torch.ones_like(f))

        z_new, f_new, g_new = z.clone(), f.clone(), g.clone()
        pending = torch.ones(rows.numel(), dtype=torch.bool, device=z.device)
        for _ in range(_MAX_LINE_SEARCH):
            p = pending.nonzero().squeeze(1)
            trial = (z[p] + step[p].unsqueeze(1) * d[p]).clamp(0, 1)
            f_t, g_t = fun(trial, rows[p])
            decrease = (g[p] * (trial - z[p])).sum(dim=1)
            ok = f_t <= f[p] + _ARMIJO * decrease
            acc = p[ok]
            z_new[acc], f_new[acc], g_new[acc] = trial[ok], f_t[ok], g_t[ok]
            pending[acc] = False
            # next trial: the minimiser of the quadratic through f(0), f'(0), f(t),
            # kept within [0.1 t, 0.5 t] (Nocedal & Wright, section 3.5)
            t = step[p]
            curv = 2 * (f_t - f[p] - decrease)
            guess = -decrease * t / curv.clamp_min(1e-30)
            shrunk = torch.minimum(torch.maximum(guess, 0.1 * t), 0.5 * t)
            step[p] = torch.where(ok, t, shrunk)
            if not bool(pending.any()):
                break

        s = z_new - z
        y = g_new - g
        sy = (s * y).sum(dim=1)
        keep_pair = ~pending & (sy > _CURVATURE * (y * y).sum(dim=1))
        if bool(keep_pair.any()):
            k = keep_pair.view(-1, 1, 1)
            s_hist = torch.where(k, torch.cat([s_hist[:, 1:], s.unsqueeze(1)], dim=1), s_hist)
            y_hist = torch.where(k, torch.cat([y_hist[:, 1:], y.unsqueeze(1)], dim=1), y_hist)
            stored = stored + keep_pair.long()
        scale = torch.maximum(torch.maximum(f.abs(), f_new.abs()), torch.ones_like(f))
        stalled = (f - f_new) <= _FTOL * scale
        z, f, g = z_new, f_new, g_new
        going = ~pending & ~stalled
        if not bool(going.all()):
            out[rows] = z
            rows, z, f, g = rows[going], z[going], f[going], g[going]
            s_hist, y_hist, stored = s_hist[going], y_hist[going], stored[going]
            if rows.numel() == 0:
                break
    out[rows] = z
    return out


def szegedy_loss(logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
    """``[B]``: cross-entropy of the target, or ``-log(1 - p_label)`` untargeted."""
    if targets is not None:
        return F.cross_entropy(logits, targets, reduction="none")
    others = other_logits(logits, labels)
    return torch.logsumexp(logits, dim=1) - torch.logsumexp(others, dim=1)


class LBFGS(MinimalAttack):
    """Szegedy et al.'s box-constrained L-BFGS attack (L2), batched.

    Args:
        norm: only ``l2``.
        binary_search_steps: solves per sample while searching c; default 10.
        max_iter: L-BFGS iterations per solve; default 100.
        initial_const: first c (weight of the loss against ``||r||^2``); default 1e-2.
        history: L-BFGS memory (pairs kept per sample); default 10.

    ``_run`` takes images ``[b, C, H, W]`` in [0, 1] and returns ``[b, C, H, W]``.
    """

    name: ClassVar[str] = "lbfgs"
    norms: ClassVar[tuple[Norm, ...]] = ("l2",)
    supports_targeted: ClassVar[bool] = True

    def __init__(
        self,
        norm: Norm | None = None,
        binary_search_steps: Count = 10,
        max_iter: Count = 100,
        initial_const: Positive = 1e-2,
        history: Count = 10,
    ) -> None:
        super().__init__(norm)
        self.binary_search_steps = binary_search_steps
        self.max_iter = max_iter
        self.initial_const = initial_const
        self.history = history

    def _run(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        eps: Tensor,
        targets: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        n = images.shape[0]
        shape = images.shape[1:]
        flat = images.flatten(1)
        best_sq = torch.full((n,), float("inf"), dtype=images.dtype, device=images.device)
        best = flat.clone()
        eps_sq = eps * eps
        const = torch.full_like(best_sq, self.initial_const)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, _NO_UPPER)

        def done() -> Tensor:
            return torch.isfinite(eps_sq) & (best_sq <= eps_sq)

        for _ in range(self.binary_search_steps):
            todo = (~done()).nonzero().squeeze(1)
            if todo.numel() == 0:
                break

            def objective(
                z: Tensor, rows: Tensor, todo: Tensor = todo, const: Tensor = const
            ) -> tuple[Tensor, Tensor]:
                ids = todo[rows]
                z = z.detach().requires_grad_(True)
                logits = model(z.view(-1, *shape))
                dist_sq = (z - flat[ids]).pow(2).sum(dim=1)
                loss = szegedy_loss(logits, labels[ids], None if targets is None else targets[ids])
                total = dist_sq + const[ids] * loss
                (grad,) = torch.autograd.grad(total.sum(), z)
                with torch.no_grad():
                    pred = logits.argmax(dim=1)
                    fooled = pred == targets[ids] if targets is not None else pred != labels[ids]
                    better = fooled & (dist_sq < best_sq[ids])
                    best_sq[ids[better]] = dist_sq[better].detach()
                    best[ids[better]] = z[better].detach()
                return total.detach(), grad

            final = minimize_in_box(objective, flat[todo], self.max_iter, self.history)
            with torch.no_grad():
                pred = model(final.view(-1, *shape)).argmax(dim=1)
            goal = targets[todo] if targets is not None else labels[todo]
            fooled = pred == goal if targets is not None else pred != goal
            found = torch.zeros(n, dtype=torch.bool, device=images.device)
            found[todo] = fooled
            # per-sample search on c; samples not in ``todo`` are finished and keep theirs
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper < _NO_UPPER, (lower + upper) / 2, const * 10)
        return best.view(n, *shape)


__all__ = ["LBFGS", "minimize_in_box", "szegedy_loss", "two_loop"]
