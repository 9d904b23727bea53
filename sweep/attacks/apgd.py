"""Auto-PGD (APGD): PGD with momentum and a budget-aware step-size schedule.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks" (ICML 2020), arXiv:2003.01690, Algorithm 1, with
the reference implementation (github.com/fra31/auto-attack, ``autopgd_base.py``)
where the paper leaves a detail open. Norms ``linf`` and ``l2`` (APGD-L1 is a
different algorithm, Croce & Hein 2021, arXiv:2103.01208, and is not provided).

Defaults (the paper's):

- ``steps = 100`` iterations (torchattacks' default of 10, and its AutoAttack
  wrapper which never passes ``steps``, are much weaker: do not copy those);
- initial step size ``eta = 2 eps`` (``rel_stepsize = 2.0``), per sample;
- momentum ``alpha = 0.75``: ``z = P(x_k + eta * s(grad))``,
  ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))``, with
  ``alpha = 1`` on the first iteration; ``s`` is ``sign`` (L-inf) or the
  L2-normalised gradient (L2); ``P`` projects onto the ball and into [0, 1];
- checkpoints ``w_j = ceil(p_j N)``, ``p_0 = 0``, ``p_1 = 0.22``,
  ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (:func:`checkpoints`);
- at each checkpoint a sample's step size is halved, and it restarts from its
  best point so far (highest loss), when either
  1. the loss increased in at most ``rho = 0.75`` of the iterations since the
     last checkpoint (the reference's ``<=``; the paper writes ``<``), or
  2. its step size was not halved at the previous checkpoint and its best loss
     has not improved since (as the reference, this condition is off at the
     first checkpoint);
- loss ``ce`` (APGD-CE) or ``dlr`` (APGD-DLR); with ``targets`` the targeted CE
  or the targeted DLR of section 3.2 (APGD-T); ``restarts = 1``; random start
  ``x + eps * t / ||t||`` with ``t`` uniform in ``[-1, 1]^d`` (L-inf) or Gaussian
  (L2), as the reference.

The reference's quirks are kept so that results match it sample for sample (the
tests check this against torchattacks' port): the first oscillation test compares
the first iterate's loss with 0 (an unset entry of the reference's loss buffer)
rather than with the starting point's loss. The one difference, which cannot weaken
the attack: a sample is dropped from the batch as soon as a forward pass shows it fooled
(``early_stop=True``) -- every per-sample state (iterate, previous iterate,
gradient, best point, best loss, step size, counters) is compacted with the same
``index_select``, so the survivors follow the same trajectory as in a full batch.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from sweep.attacks.base import Attack, AttackKind, is_fooled
from sweep.attacks.losses import get_loss
from sweep.attacks.norms import Norm, batch_view, lp_norm, project
from sweep.attacks.pgd import box_limited_eps, l2_direction, loss_and_grad

APGD_LOSSES = ("ce", "dlr")


def checkpoints(steps: int) -> list[int]:
    """Iteration counts after which APGD checks its step size (Croce & Hein 2020, sec. 3.2).

    ``w_1 = 0.22 N``; each later gap shrinks by ``0.03 N`` down to ``0.06 N``
    (all rounded down to whole iterations, at least 1, as the reference). For
    ``N = 100``: ``[22, 41, 57, 70, 80, 87, 93, 99]``.
    """
    first = max(int(0.22 * steps), 1)
    shrink = max(int(0.03 * steps), 1)
    min_gap = max(int(0.06 * steps), 1)
    points, position, gap = [], 0, first
    while position + gap <= steps:
        position += gap
        points.append(position)
        gap = max(gap - shrink, min_gap)
    return points


class APGD(Attack):
    """Auto-PGD (Croce & Hein 2020, arXiv:2003.01690), untargeted or targeted.

    Args:
        norm: ``linf`` (default) or ``l2``.
        steps: iterations per restart; default 100 (the paper's budget).
        restarts: random restarts, each on the samples still unbroken, so the
            best is kept per sample; default 1.
        loss: ``ce`` (default) or ``dlr``; targeted variants when ``targets`` are
            given. DLR needs >= 3 classes (targeted >= 4).
        rho: oscillation threshold of condition 1; default 0.75.
        momentum: ``alpha``; default 0.75.
        rel_stepsize: initial step size as a multiple of eps; default 2.0.
        early_stop: drop fooled samples from the batch; default ``True``.

    Shapes: images ``[B, C, H, W]`` in [0, 1]; labels, targets, eps ``[B]``.
    """

    name: ClassVar[str] = "apgd"
    kind: ClassVar[AttackKind] = "fixed"
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2")
    supports_targeted: ClassVar[bool] = True

    def __init__(
        self,
        norm: Norm | None = None,
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        momentum: float = 0.75,
        rel_stepsize: float = 2.0,
        early_stop: bool = True,
    ) -> None:
        super().__init__(norm)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"apgd: steps must be an integer >= 1, got {steps!r}")
        if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
            raise ValueError(f"apgd: restarts must be an integer >= 1, got {restarts!r}")
        if loss not in APGD_LOSSES:
            raise ValueError(f"apgd: unknown loss {loss!r}; valid: {', '.join(APGD_LOSSES)}")
        if not 0.0 < rho <= 1.0:
            raise ValueError(f"apgd: rho must be in (0, 1], got {rho!r}")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"apgd: momentum must be in (0, 1], got {momentum!r}")
        if not (math.isfinite(rel_stepsize) and rel_stepsize > 0):
            raise ValueError(
                f"apgd: rel_stepsize must be a finite number > 0, got {rel_stepsize!r}"
            )
        if not isinstance(early_stop, bool):
            raise ValueError(f"apgd: early_stop must be True or False, got {early_stop!r}")
        self.steps = steps
        self.restarts = restarts
        self.loss = loss
        self.loss_fn = get_loss(loss)
        self.rho = rho
        self.momentum = momentum
        self.rel_stepsize = rel_stepsize
        self.early_stop = early_stop
        self.checkpoints = checkpoints(steps)

    # -- norm-specific pieces ---------------------------------------------------------
    def _start(self, x: Tensor, eps: Tensor, gen: torch.Generator) -> Tensor:
        if self.norm == "linf":
            t = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
            scale = t.flatten(1).abs().amax(dim=1)
        else:
            t = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            scale = lp_norm(t, "l2")
        return (x + t * batch_view(eps / (scale + 1e-12), x)).clamp(0.0, 1.0)

    def _direction(self, grad: Tensor) -> Tensor:
        return grad.sign() if self.norm == "linf" else l2_direction(grad)

    def _project(
        self, x: Tensor, adv: Tensor, eps: Tensor, lo: Tensor | None, hi: Tensor | None
    ) -> Tensor:
        if lo is not None and hi is not None:  # linf: ball and box in one clamp
            return torch.clamp(adv, lo, hi)
        return project(x, adv, eps, self.norm)

    # -- the search -----------------------------------------------------------------
    def _run(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        eps: Tensor,
        targets: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        eps = box_limited_eps(eps, images, self.norm)
        best = images.clone()
        todo = torch.arange(images.shape[0], device=images.device)
        with torch.enable_grad():
            for _ in range(self.restarts):
                sub_t = None if targets is None else targets[todo]
                found, fooled = self._single_run(
                    model, images[todo], labels[todo], eps[todo], sub_t, generator
                )
                best[todo] = found
                todo = todo[~fooled]
                if todo.numel() == 0:
                    break
        return best

    def _single_run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        t: Tensor | None,
        gen: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """Algorithm 1 on ``n`` samples. Returns ``(adv [n, ...], fooled [n])``: the
        first fooling iterate where one was found, else the highest-loss point."""
        n = x.shape[0]
        out = x.clone()
        fooled_all = torch.zeros(n, dtype=torch.bool, device=x.device)
        lo = hi = None
        if self.norm == "linf":
            ev = batch_view(eps, x)
            lo, hi = (x - ev).clamp_min(0.0), (x + ev).clamp_max(1.0)

        adv = self._start(x, eps, gen)
        loss, logits, grad = loss_and_grad(model, adv, y, t, self.loss_fn)
        adv = adv.detach()
        # Per-sample state; every entry is compacted together when samples leave.
        s: dict[str, Tensor] = {
            "idx": torch.arange(n, device=x.device),  # row of ``out``
            "x": x,
            "y": y,
            "eps": eps,
            "adv": adv,
            "adv_old": adv.clone(),
            "grad": grad,
            "best": adv.clone(),
            "grad_best": grad.clone(),
            "loss_best": loss.clone(),
            # The reference's first increase test compares f(x^(1)) with an unset (zero)
            # entry of its loss buffer, not with f(x^(0)); kept so results match it.
            "loss_prev": torch.zeros_like(loss),
            "loss_best_last": loss.clone(),  # best loss at the previous checkpoint
            "reduced_last": torch.ones(n, dtype=torch.bool, device=x.device),
            "increases": torch.zeros(n, dtype=torch.int32, device=x.device),
            "step": eps * self.rel_stepsize,
        }
        if t is not None:
            s["t"] = t
        if lo is not None and hi is not None:
            s["lo"], s["hi"] = lo, hi

        fooled = is_fooled(logits.argmax(1), y, t)
        s = self._record(s, fooled, out, fooled_all)
        if s is None:
            return out, fooled_all

        ckpts = set(self.checkpoints)
        last_ckpt = 0
        for i in range(self.steps):
            lo_, hi_ = s.get("lo"), s.get("hi")
            with torch.no_grad():
                a = self.momentum if i > 0 else 1.0
                adv, sv = s["adv"], batch_view(s["step"], s["x"])
                z = self._project(s["x"], adv + sv * self._direction(s["grad"]), s["eps"], lo_, hi_)
                moved = adv + a * (z - adv) + (1.0 - a) * (adv - s["adv_old"])
                new = self._project(s["x"], moved, s["eps"], lo_, hi_)
            s["adv_old"] = adv
            loss, logits, grad = loss_and_grad(model, new, s["y"], s.get("t"), self.loss_fn)
            new = new.detach()
            s["adv"], s["grad"] = new, grad
            s["increases"] += loss > s["loss_prev"]
            s["loss_prev"] = loss
            improved = loss > s["loss_best"]
            iv = batch_view(improved, new)
            s["best"] = torch.where(iv, new, s["best"])
            s["grad_best"] = torch.where(iv, grad, s["grad_best"])
            s["loss_best"] = torch.where(improved, loss, s["loss_best"])

            fooled = is_fooled(logits.argmax(1), s["y"], s.get("t"))
            s = self._record(s, fooled, out, fooled_all)
            if s is None:
                return out, fooled_all

            if i + 1 in ckpts:
                gap = i + 1 - last_ckpt
                last_ckpt = i + 1
                oscillating = s["increases"] <= self.rho * gap
                stalled = ~s["reduced_last"] & (s["loss_best_last"] >= s["loss_best"])
                reduce = oscillating | stalled
                s["reduced_last"] = reduce
                s["loss_best_last"] = s["loss_best"].clone()
                s["increases"] = torch.zeros_like(s["increases"])
                s["step"] = torch.where(reduce, s["step"] / 2, s["step"])
                rv = batch_view(reduce, s["adv"])
                s["adv"] = torch.where(rv, s["best"], s["adv"])  # restart from the best point
                s["grad"] = torch.where(rv, s["grad_best"], s["grad"])

        # never fooled: return the highest-loss point (the base class verifies it)
        rest = ~fooled_all[s["idx"]]
        out[s["idx"][rest]] = s["best"][rest]
        return out, fooled_all

    def _record(
        self, s: dict[str, Tensor], fooled: Tensor, out: Tensor, fooled_all: Tensor
    ) -> dict[str, Tensor] | None:
        """Store newly fooled iterates into ``out``; with early stop, drop them from
        the state. Returns the state, or ``None`` when no sample is left."""
        if self.early_stop:
            if not bool(fooled.any()):
                return s
            hit = fooled.nonzero().squeeze(1)
            out[s["idx"][hit]] = s["adv"][hit]
            fooled_all[s["idx"][hit]] = True
            keep = (~fooled).nonzero().squeeze(1)
            if keep.numel() == 0:
                return None
            return {k: v.index_select(0, keep) for k, v in s.items()}
        new = fooled & ~fooled_all
        out[new] = s["adv"][new]
        fooled_all |= fooled
        return s
