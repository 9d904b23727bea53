"""Per-sample norms, projections and random starts for a batch of images.

All functions take batches shaped ``[B, C, H, W]`` (any ``[B, ...]`` works) and a
per-sample budget ``eps`` shaped ``[B]``. Norms are measured over all of a
sample's coordinates, except ``l0`` which counts *pixels* (spatial positions
where any channel changed), the budget of the One-Pixel attack (Su et al. 2019).

:data:`NORM_OPS` is the one table of per-norm pieces the kernels share (the random
start, the steepest-ascent direction, the projection onto the ball, the box
limits, the dual norm): PGD, APGD, FMN, DeepFool, FAB and the noise baseline take
them from there rather than branch on the norm themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sweep.results.schema import EPS_ATOL, EPS_RTOL
from sweep.validation.names import NORMS as NORMS  # torch-free, shared with the spec
from sweep.validation.names import Norm


def batch_view(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample ``[B]`` tensor to broadcast against ``like`` ``[B, ...]``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def lp_norm(delta: Tensor, norm: Norm) -> Tensor:
    """Per-sample norm of ``delta`` ``[B, ...]`` -> ``[B]`` (float)."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    if norm == "l0":
        changed = delta.ne(0).any(dim=1) if delta.dim() == 4 else delta.ne(0)
        return changed.flatten(1).sum(dim=1).to(delta.dtype)
    raise ValueError(f"unknown norm {norm!r}")


# Guards divisions by a zero norm (a zero gradient, an all-zero draw).
_TINY = 1e-12


def within(norms: Tensor, eps: Tensor) -> Tensor:
    """``norms <= eps`` with the float tolerance above (``inf`` budgets always hold)."""
    return norms <= eps * (1 + EPS_RTOL) + EPS_ATOL


def project_l1_ball(delta: Tensor, eps: Tensor) -> Tensor:
    """Euclidean projection onto the L1 ball of radius ``eps`` (Duchi et al. 2008, Fig. 1)."""
    flat = delta.flatten(1)
    abs_flat = flat.abs()
    outside = abs_flat.sum(dim=1) > eps
    if not bool(outside.any()):
        return delta
    sorted_abs, _ = abs_flat.sort(dim=1, descending=True)
    cumsum = sorted_abs.cumsum(dim=1)
    ranks = torch.arange(1, flat.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    cond = sorted_abs - (cumsum - eps.unsqueeze(1)) / ranks > 0
    rho = cond.to(torch.int64).cumsum(dim=1).argmax(dim=1)  # last index where cond holds
    theta = (cumsum.gather(1, rho.unsqueeze(1)).squeeze(1) - eps) / (rho + 1).to(delta.dtype)
    theta = theta.clamp_min(0)
    projected = flat.sign() * (abs_flat - theta.unsqueeze(1)).clamp_min(0)
    flat = torch.where(outside.unsqueeze(1), projected, flat)
    return flat.view_as(delta)


def project_l1_box(x: Tensor, adv: Tensor, eps: Tensor) -> Tensor:
    """Exact Euclidean projection of ``adv`` onto ``{z : ||z - x||_1 <= eps, z in [0, 1]}``.

    Not project-then-clip (:func:`project`), which stays feasible but is not the
    nearest feasible point: APGD-L1 needs the true projection onto the intersection
    (Croce & Hein, "Mind the box", ICML 2021, arXiv:2103.01208, sec. 3.2). With
    ``y = adv - x`` and ``u_i`` the room the box leaves in the direction of ``y_i``
    (``1 - x_i`` if ``y_i > 0``, else ``x_i``), the KKT conditions give
    ``d_i = sign(y_i) * clamp(|y_i| - lam, 0, u_i)`` with ``lam = 0`` when the
    box-clipped ``y`` already lies in the ball, else the ``lam > 0`` where
    ``s(lam) = sum_i clamp(|y_i| - lam, 0, u_i) = eps``. ``s`` is piecewise linear
    and non-increasing, with kinks at ``|y_i| - u_i`` (coordinate ``i`` leaves its box
    face) and ``|y_i|`` (it reaches 0): sorting the ``2 d`` kinks finds ``lam`` in
    ``O(d log d)`` per sample. ``x`` must lie in [0, 1]; ``eps`` is ``[B]``, finite.
    """
    y = (adv - x).flatten(1)
    xf = x.flatten(1)
    mag = y.abs()
    room = torch.where(y > 0, 1.0 - xf, xf).clamp_min(0.0)
    clipped = torch.minimum(mag, room)  # s(0): the box alone
    need = clipped.sum(dim=1) > eps
    lam = torch.zeros_like(eps)
    if bool(need.any()):
        rows = need.nonzero().squeeze(1)
        m, r, e = mag[rows], room[rows], eps[rows]
        # kinks: a coordinate starts shrinking at |y| - u (slope -1), stops at |y| (+1)
        kinks = torch.cat([(m - r).clamp_min(0.0), m], dim=1)
        slope = torch.cat([torch.ones_like(m), -torch.ones_like(m)], dim=1)
        kinks, order = kinks.sort(dim=1)
        shrinking = slope.gather(1, order).cumsum(dim=1)  # coordinates moving on [k_j, k_j+1]
        gaps = torch.diff(kinks, dim=1, prepend=torch.zeros_like(kinks[:, :1]))
        # s at each kink: s(0) minus what the shrinking coordinates lost on each gap
        lost = torch.cat([torch.zeros_like(gaps[:, :1]), shrinking[:, :-1] * gaps[:, 1:]], dim=1)
        s_at = clipped[rows].sum(dim=1, keepdim=True) - lost.cumsum(dim=1)
        # the last kink where s is still above eps: lam lies on the segment after it
        j = (s_at > e.unsqueeze(1)).long().sum(dim=1).sub(1).clamp_min(0)
        k_j = kinks.gather(1, j.unsqueeze(1)).squeeze(1)
        s_j = s_at.gather(1, j.unsqueeze(1)).squeeze(1)
        n_j = shrinking.gather(1, j.unsqueeze(1)).squeeze(1).clamp_min(1)
        lam[rows] = k_j + (s_j - e) / n_j.to(eps.dtype)
    d = y.sign() * torch.minimum((mag - lam.unsqueeze(1)).clamp_min(0.0), room)
    return (xf + d).view_as(adv).clamp(0.0, 1.0)


def project_linf_ball(delta: Tensor, eps: Tensor) -> Tensor:
    """Clamp every coordinate of ``delta`` to ``[-eps, eps]``."""
    be = batch_view(eps, delta)
    return torch.maximum(torch.minimum(delta, be), -be)


def project_l2_ball(delta: Tensor, eps: Tensor) -> Tensor:
    """Scale ``delta`` down to L2 norm ``eps`` where it is longer."""
    n = lp_norm(delta, "l2")
    factor = torch.where(n > eps, eps / n.clamp_min(_TINY), torch.ones_like(n))
    return delta * batch_view(factor, delta)


def project_l0_pixels(delta: Tensor, eps: Tensor) -> Tensor:
    """Keep the ``eps`` pixels with the largest change (L-inf over channels), zero the rest."""
    mag = delta.abs().amax(dim=1) if delta.dim() == 4 else delta.abs()
    flat = mag.flatten(1)
    k = eps.floor().clamp(0, flat.shape[1]).to(torch.int64)
    order = flat.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=delta.device).expand_as(order))
    keep = (ranks < k.unsqueeze(1)).view_as(mag)
    if delta.dim() == 4:
        keep = keep.unsqueeze(1)
    return delta * keep


def project(x: Tensor, adv: Tensor, eps: Tensor, norm: Norm) -> Tensor:
    """Project ``adv`` onto the ``norm`` ball of radius ``eps`` around ``x``, then into [0, 1].

    Clipping after projecting cannot leave the ball: with ``x`` in the box, clipping
    only shrinks each coordinate of ``adv - x``. ``eps = inf`` only clips.
    """
    if norm not in NORM_OPS:
        raise ValueError(f"unknown norm {norm!r}")
    delta = adv - x
    finite = torch.isfinite(eps)
    e = torch.where(finite, eps, torch.zeros_like(eps))
    projected = NORM_OPS[norm].project_ball(delta, e)
    delta = torch.where(batch_view(finite, delta), projected, delta)
    return (x + delta).clamp(0.0, 1.0)


def random_start(x: Tensor, eps: Tensor, norm: Norm, generator: torch.Generator) -> Tensor:
    """A random starting point in the ``norm`` ball around ``x`` (clipped to [0, 1]).

    L-inf: uniform in the box (Madry et al. 2018). L2 / L1: a random direction
    (Gaussian for L2, Laplace for L1, as in Croce & Hein's APGD-L1 start) at a
    radius drawn uniformly in ``[0, eps]`` -- torchattacks' ``PGDL2`` start.

    Not uniform in the ball on purpose: in ``d`` dimensions a uniform point lies at
    radius ``eps * u^(1/d)``, almost on the sphere, so the whole budget starts out
    spent on a random direction that the projection removes only slowly. Measured on
    the digits models (PGD, 20 steps, 6 seeds): the uniform-ball start left 1-3 more
    samples of 128 unbroken than this start.
    """
    e = torch.where(torch.isfinite(eps), eps, torch.ones_like(eps))
    shape, dev, dt = x.shape, x.device, x.dtype
    if norm == "linf":
        u = torch.rand(shape, generator=generator, device=dev, dtype=dt) * 2 - 1
        delta = u * batch_view(e, x)
    elif norm in ("l2", "l1"):
        if norm == "l2":
            d = torch.randn(shape, generator=generator, device=dev, dtype=dt)
        else:
            expo = torch.empty(shape, device=dev, dtype=dt).exponential_(generator=generator)
            sign = torch.randint(0, 2, shape, generator=generator, device=dev).to(dt) * 2 - 1
            d = expo * sign
        d = NORM_OPS[norm].unit(d)
        radius = torch.rand(shape[0], generator=generator, device=dev, dtype=dt) * e
        delta = d * batch_view(radius, x)
    else:
        raise ValueError(f"no random start for norm {norm!r}")
    return (x + delta).clamp(0.0, 1.0)


def linf_bounds(x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """``(lo, hi)``: the L-inf ball of radius ``eps`` around ``x`` intersected with the
    [0, 1] box, per coordinate; ``clamp(adv, lo, hi)`` projects onto both at once."""
    ev = batch_view(eps, x)
    return (x - ev).clamp_min(0.0), (x + ev).clamp_max(1.0)


def _sign(grad: Tensor) -> Tensor:
    return grad.sign()


def _l2_ascent(grad: Tensor) -> Tensor:
    return NORM_OPS["l2"].unit(grad)


def _uniform(shape: torch.Size, gen: torch.Generator, like: Tensor) -> Tensor:
    return torch.rand(shape, generator=gen, device=like.device, dtype=like.dtype) * 2 - 1


def _gaussian(shape: torch.Size, gen: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype)


@dataclass(frozen=True)
class NormOps:
    """The pieces of one norm that the kernels share (one row of :data:`NORM_OPS`).

    Attributes:
        name: the norm.
        dual: the dual norm ``q`` (``1/p + 1/q = 1``): the ``p``-distance from ``x`` to
            the hyperplane ``<w, z> = b`` is ``|<w, x> - b| / ||w||_q`` (DeepFool,
            FAB, FMN's boundary estimate).
        dual_p: ``q`` as the ``p`` of :func:`torch.norm` (L0 has no dual: unused there).
        ascent: the steepest-ascent unit direction of a gradient ``[b, ...]``: ``sign``
            (L-inf), the L2-normalised gradient (L2); ``None`` for L1 and L0, whose
            steepest ascent moves a single coordinate: PGD and APGD take their own
            sparse steps there.
        project_ball: ``(delta, eps) -> delta`` projected onto the ball (no box).
        draw: the noise a random start is drawn from, ``(shape, generator, like)``:
            uniform in ``[-1, 1]^d`` for L-inf, Gaussian otherwise (the reference
            codes of APGD and FAB); ``None`` for L0.
        diameter: the diameter of the [0, 1] box of dimension ``d`` in this norm.
    """

    name: Norm
    dual: Norm
    dual_p: float
    ascent: Callable[[Tensor], Tensor] | None
    project_ball: Callable[[Tensor, Tensor], Tensor]
    draw: Callable[[torch.Size, torch.Generator, Tensor], Tensor] | None
    diameter: Callable[[int], float]

    def measure(self, delta: Tensor) -> Tensor:
        """Per-sample norm ``[b]`` of ``delta`` ``[b, ...]`` (:func:`lp_norm`)."""
        return lp_norm(delta, self.name)

    def unit(self, v: Tensor) -> Tensor:
        """``v / ||v||`` per sample (a zero ``v`` stays zero)."""
        return v / batch_view(self.measure(v).clamp_min(_TINY), v)

    def project(self, x: Tensor, adv: Tensor, eps: Tensor) -> Tensor:
        """:func:`project`: onto the ball of radius ``eps`` around ``x``, then into [0, 1]."""
        return project(x, adv, eps, self.name)

    def random_start(self, x: Tensor, eps: Tensor, generator: torch.Generator) -> Tensor:
        """:func:`random_start`: PGD's start in the ball around ``x``."""
        return random_start(x, eps, self.name, generator)

    def box_limit(self, eps: Tensor, like: Tensor) -> Tensor:
        """``eps`` capped at the box's diameter (``inf`` -> finite): a larger ball meets
        the [0, 1] box in the same set, and the cap keeps step sizes finite."""
        return eps.clamp_max(self.diameter(like[0].numel()))


NORM_OPS: dict[Norm, NormOps] = {
    "linf": NormOps("linf", "l1", 1.0, _sign, project_linf_ball, _uniform, lambda d: 1.0),
    "l2": NormOps("l2", "l2", 2.0, _l2_ascent, project_l2_ball, _gaussian, math.sqrt),
    "l1": NormOps("l1", "linf", math.inf, None, project_l1_ball, _gaussian, float),
    "l0": NormOps("l0", "l0", math.inf, None, project_l0_pixels, None, float),
}
