"""Fast Minimum-Norm (FMN): gradient steps inside an adaptive norm ball.

Reference: M. Pintor, F. Roli, W. Brendel and B. Biggio, "Fast Minimum-norm
Adversarial Attacks through Adaptive Norm Constraints", NeurIPS 2021,
arXiv:2102.12827 (Algorithm 1), and the authors' reference implementation (in
Foolbox 3 and Adversarial Library), whose defaults we follow:

- loss: the logit difference ``max_{j != y} Z_j - Z_y`` (untargeted) or
  ``Z_t - max_{j != t} Z_j`` (targeted), maximised (:func:`sweep.attacks.losses.margin`);
- step ``k`` of ``K``: ``delta += alpha_k * grad / ||grad||_2`` (the L2-normalised
  gradient for every norm, as the reference), then project ``delta`` onto the
  ``norm`` ball of radius ``epsilon_k`` and clip ``x + delta`` to [0, 1];
- the radius adapts per sample: while adversarial, ``epsilon = min(epsilon * (1 -
  gamma_k), best norm)``; not adversarial but one found before, ``epsilon * (1 +
  gamma_k)``; none found yet, ``||delta|| + |loss| / ||grad||_dual`` (a linear
  estimate of the distance to the boundary); capped at the largest norm the box allows;
- ``alpha_k`` and ``gamma_k`` follow a cosine annealing from ``alpha_init`` to
  ``alpha_final`` and from ``gamma_init`` to ``gamma_final``;
- the smallest-norm adversarial iterate is kept per sample.

Defaults: ``steps=100`` (Foolbox's default; the paper's experiments use up to
1,000), ``alpha_init=1.0``, ``alpha_final=alpha_init / 100``, ``gamma_init=0.05``,
``gamma_final=0.001``. Norms: ``linf``, ``l2``, ``l1`` (the projection onto the L1
ball is Duchi et al.'s, from :mod:`sweep.attacks.norms`). The L0 variant is not
implemented (this project's ``l0`` counts pixels, the reference counts elements).

One deviation, on by default (``box_aware=True``): before normalising the
gradient we drop its components that would push a pixel already at 0 or 1 out of
the box. Clipping undoes them anyway; left in, on images with many saturated
pixels (digits, MNIST) most of the L2-normalised step is clipped away and, before
the first adversarial, the radius never grows past the linear estimate (measured
on the built-in digits CNN, FMN-L2 with 100 steps: 17 of 62 samples fooled with the
reference step, 62 of 62 with this one, median L2 0.554). ``box_aware=False`` is the
reference step. We also check the iterate after the last step (the reference does
not), which costs one forward pass.

With a finite ``eps`` a sample leaves the batch once its best adversarial is
within ``eps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from sweep.attacks.active import ActiveSet
from sweep.attacks.base import MinimalAttack, is_fooled
from sweep.attacks.losses import margin
from sweep.attacks.norms import NORM_OPS, Norm
from sweep.attacks.params import AtMost, Check, Count, Positive

_TINY = 1e-12


def feasible_direction(point: Tensor, ascent: Tensor) -> Tensor:
    """Zero the ascent components that would push a pixel at 0 or 1 out of the box.

    Clipping would undo them anyway; left in, they shrink the useful part of an
    L2-normalised step, and on images with many saturated pixels (digits, MNIST)
    the step is mostly clipped away.
    """
    blocked = ((point <= 0) & (ascent < 0)) | ((point >= 1) & (ascent > 0))
    return ascent.masked_fill(blocked, 0.0)


def cosine_anneal(start: float, end: float, step: int, steps: int) -> float:
    """``end + (start - end) * (1 + cos(pi * step / steps)) / 2``: ``start`` at step 0."""
    return end + (start - end) * (1 + math.cos(math.pi * step / steps)) / 2


class FMN(MinimalAttack):
    """Fast Minimum-Norm attack (L-inf, L2, L1), targeted or not.

    Args:
        norm: ``linf`` (default), ``l2`` or ``l1``.
        steps: iterations; default 100.
        alpha_init: initial step size (L2 length of the step); default 1.0.
        alpha_final: final step size; default ``alpha_init / 100``.
        gamma_init: initial relative change of the radius per step; default 0.05.
        gamma_final: final relative change of the radius; default 0.001.
        box_aware: drop gradient components blocked by the [0, 1] box before
            normalising; default True (False: the reference step).

    ``_run`` takes images ``[b, C, H, W]`` in [0, 1] and returns ``[b, C, H, W]``.
    """

    name: ClassVar[str] = "fmn"
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2", "l1")
    supports_targeted: ClassVar[bool] = True
    # alpha_final None is alpha_init / 100, within the bound
    checks: ClassVar[tuple[Check, ...]] = (AtMost("alpha_final", "alpha_init"), AtMost("gamma_final", "gamma_init"))

    def __init__(
        self,
        norm: Norm | None = None,
        steps: Count = 100,
        alpha_init: Positive = 1.0,
        alpha_final: Positive | None = None,
        gamma_init: Annotated[float, Field(gt=0, lt=1)] = 0.05,
        gamma_final: Annotated[float, Field(gt=0, lt=1)] = 0.001,
        box_aware: bool = True,
    ) -> None:
        super().__init__(norm)
        alpha_final = alpha_init / 100 if alpha_final is None else alpha_final
        self.steps = steps
        self.alpha_init = alpha_init
        self.alpha_final = alpha_final
        self.gamma_init = gamma_init
        self.gamma_final = gamma_final
        self.box_aware = box_aware

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
        dual = self.ops.dual_p
        s = _FMNState(
            **ActiveSet.outcome(images),
            clean=images,
            y=labels,
            t=targets,
            worst=self.ops.measure(torch.maximum(images, 1 - images)),  # farthest box corner
            delta=torch.zeros_like(images),
            radius=torch.full((n,), float("inf"), dtype=images.dtype, device=images.device),
            found=torch.zeros(n, dtype=torch.bool, device=images.device),
        )
        for step in range(self.steps + 1):
            x = s.clean
            delta = s.delta.requires_grad_(True)
            logits = model(x + delta)
            loss = margin(logits, s.y, s.t)
            is_adv = is_fooled(logits.argmax(dim=1), s.y, s.t)
            delta_norm = self.ops.measure(delta.detach())
            s.improve(is_adv, x + delta.detach(), delta_norm)
            if step == self.steps:  # the extra check of the last iterate
                break
            (grad,) = torch.autograd.grad(loss.sum(), delta)
            delta = delta.detach()
            if self.box_aware:
                grad = feasible_direction(x + delta, grad)

            with torch.no_grad():
                gamma = cosine_anneal(self.gamma_init, self.gamma_final, step, self.steps)
                alpha = cosine_anneal(self.alpha_init, self.alpha_final, step, self.steps)
                s.found |= is_adv
                to_boundary = loss.detach().abs() / grad.flatten(1).norm(p=dual, dim=1).clamp_min(
                    _TINY
                )
                radius = torch.where(
                    is_adv,
                    torch.minimum(s.radius * (1 - gamma), s.best_norm[s.rows]),
                    torch.where(s.found, s.radius * (1 + gamma), delta_norm + to_boundary),
                )
                s.radius = torch.minimum(radius, s.worst)

                unit = NORM_OPS["l2"].unit(grad)  # the L2 step for every norm, as the reference
                delta = self.ops.project_ball(delta + alpha * unit, s.radius)
                s.delta = (x + delta).clamp(0, 1) - x

                # finite eps: a sample whose best is within its budget is done
                done = s.settled(eps)
                if bool(done.any()) and not s.keep(~done):
                    break
        return s.result


@dataclass(eq=False)
class _FMNState(ActiveSet):
    """The samples FMN still attacks (:class:`ActiveSet` compacts them)."""

    clean: Tensor
    y: Tensor
    t: Tensor | None
    worst: Tensor  # the largest norm the box allows
    delta: Tensor
    radius: Tensor  # the adaptive norm constraint
    found: Tensor  # an adversarial was seen


__all__ = ["FMN", "cosine_anneal"]
