"""Per-sample norms, projections and random starts for a batch of images.

All functions take batches shaped ``[B, C, H, W]`` (any ``[B, ...]`` works) and a
per-sample budget ``eps`` shaped ``[B]``. Norms are measured over all of a
sample's coordinates, except ``l0`` which counts *pixels* (spatial positions
where any channel changed), the budget of the One-Pixel attack (Su et al. 2019).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from sweep.schema import EPS_ATOL, EPS_RTOL

Norm = Literal["linf", "l2", "l1", "l0"]
NORMS: tuple[Norm, ...] = ("linf", "l2", "l1", "l0")


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
    delta = adv - x
    finite = torch.isfinite(eps)
    e = torch.where(finite, eps, torch.zeros_like(eps))
    if norm == "linf":
        be = batch_view(e, delta)
        projected = torch.maximum(torch.minimum(delta, be), -be)
    elif norm == "l2":
        n = lp_norm(delta, "l2")
        factor = torch.where(n > e, e / n.clamp_min(1e-12), torch.ones_like(n))
        projected = delta * batch_view(factor, delta)
    elif norm == "l1":
        projected = project_l1_ball(delta, e)
    elif norm == "l0":
        projected = project_l0_pixels(delta, e)
    else:
        raise ValueError(f"unknown norm {norm!r}")
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
        d = d / batch_view(lp_norm(d, norm).clamp_min(1e-12), d)
        radius = torch.rand(shape[0], generator=generator, device=dev, dtype=dt) * e
        delta = d * batch_view(radius, x)
    else:
        raise ValueError(f"no random start for norm {norm!r}")
    return (x + delta).clamp(0.0, 1.0)
