"""Random-noise baseline: the floor any real attack must beat.

A model that loses accuracy to random noise of norm eps is not robust in any
sense; one that resists noise but falls to PGD shows what the gradient attack
finds. Reference: the random baseline of Carlini et al., "On Evaluating
Adversarial Robustness" (2019), arXiv:1902.06705, section 5.

Budget: each of ``draws`` candidates is drawn uniformly in the L-inf box or as a
Gaussian direction scaled to the L2/L1 sphere of radius eps; a sample counts as
fooled by its first fooling draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from sweep.attacks.active import ActiveSet
from sweep.attacks.base import FixedAttack, confirm_fooled, is_fooled
from sweep.attacks.norms import Norm, batch_view
from sweep.attacks.params import Count


class Noise(FixedAttack):
    """Uniform (L-inf) or Gaussian-direction (L2, L1) noise at the full budget.

    Args:
        norm: ``linf`` (default), ``l2`` or ``l1``.
        distribution: ``uniform`` (corners of the L-inf box: +-eps per pixel) or
            ``gaussian`` (a Gaussian vector rescaled to norm eps). Default ``uniform``.
        draws: independent draws per sample; default 10.
    """

    name: ClassVar[str] = "noise"
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2", "l1")
    uses_gradients: ClassVar[bool] = False
    bf16_search: ClassVar[bool] = True

    def __init__(
        self,
        norm: Norm | None = None,
        distribution: Literal["uniform", "gaussian"] = "uniform",
        draws: Count = 10,
    ) -> None:
        super().__init__(norm)
        self.distribution = distribution
        self.draws = draws

    def _draw(self, x: Tensor, eps: Tensor, gen: torch.Generator) -> Tensor:
        if self.norm == "linf" and self.distribution == "uniform":
            sign = torch.randint(0, 2, x.shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1
            return sign * batch_view(eps, x)
        d = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        return self.ops.unit(d) * batch_view(eps, x)

    @torch.no_grad()
    def _run(self, model: nn.Module, images: Tensor, labels: Tensor, eps: Tensor,
             targets: Tensor | None, generator: torch.Generator) -> Tensor:
        eps = torch.where(torch.isfinite(eps), eps, torch.ones_like(eps))
        s = _NoiseState(**ActiveSet.outcome(images), x=images, y=labels, t=targets, eps=eps)
        for _ in range(self.draws):
            cand = (s.x + self._draw(s.x, s.eps, generator)).clamp(0, 1)
            fooled = confirm_fooled(model, cand, is_fooled(model(cand).argmax(1), s.y, s.t), s.y, s.t)
            if not s.record_and_drop(fooled, cand):  # fooled samples cost nothing more
                break
        return s.result


@dataclass(eq=False)
class _NoiseState(ActiveSet):
    x: Tensor
    y: Tensor
    t: Tensor | None
    eps: Tensor
