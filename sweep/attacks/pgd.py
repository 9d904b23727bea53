"""Projected gradient descent (PGD) and its one-step special case, FGSM.

- **PGD**: Madry et al., "Towards Deep Learning Models Resistant to Adversarial
  Attacks" (ICLR 2018), arXiv:1706.06083. Norms ``linf``, ``l2`` and ``l1``.
- **FGSM**: Goodfellow et al., "Explaining and Harnessing Adversarial Examples"
  (ICLR 2015), arXiv:1412.6572: one step of size eps from the clean image, no
  random start (``linf``: the sign of the gradient; ``l2``: the L2-normalised
  gradient, the "fast gradient method").

One template (Foolbox's design) with three norm-specific pieces: the random start
(:func:`sweep.attacks.norms.random_start`), the normalised step, and the projection.

- ``linf`` step: ``step * sign(grad)``. As in Madry et al.'s reference code and
  torchattacks, ``sign(0) = 0``: a coordinate with an exactly zero gradient does
  not move. With the random start exact zeros are rare; they happen only where
  the loss is flat (e.g. a saturated cross-entropy, for which ``loss="margin"``
  or ``"dlr"`` are the cure), and no direction is better than another there.
- ``l2`` step: ``step * grad / ||grad||_2`` (a zero gradient makes no step).
- ``l1`` step: the sparse steepest-ascent step of Tramer & Boneh, "Adversarial
  Training and Robustness for Multiple Perturbations" (NeurIPS 2019),
  arXiv:1904.13000 (SLIDE): only the top ``(1 - l1_sparsity)`` fraction of
  coordinates by ``|grad|`` move, each by ``step / k`` in the sign of its gradient,
  so the step has L1 length ``step``. Coordinates pinned at the box boundary with
  a gradient pushing outwards are left out of the top-k (a step there would be
  clipped away), as Croce & Hein (2021, arXiv:2103.01208) point out.
- projection: onto the eps ball, then into [0, 1] (L1: Duchi et al.'s exact
  Euclidean projection onto the L1 ball, then the clip).

Budget and defaults:

- ``steps = 20`` (the longer of the two PGD budgets in Madry et al.'s CIFAR-10
  evaluation; torchattacks' default is 10);
- step size ``rel_stepsize * eps`` per sample, ``rel_stepsize = 2.5 / steps`` by
  default: the Madry lab's rule of thumb (also the recipe that trains this repo's
  ``digits-cnn-at``), which lets the iterates travel 2.5 eps in total, enough to
  cross the ball from a random start and back. ``step_size`` gives an absolute
  step instead (torchattacks' ``alpha``), the same for every sample;
- ``random_start = True``: uniform in the L-inf box (Madry et al.); for L2 / L1
  a Gaussian / Laplace direction at a radius uniform in ``[0, eps]``
  (:func:`sweep.attacks.norms.random_start` says why not uniform in the ball; it is also
  torchattacks' ``PGDL2`` start);
- ``restarts = 1``. Each restart attacks only the samples still unbroken, so the
  best adversarial is kept **per sample**, never per batch (the bug of ART #714);
- ``loss = "ce"`` (Madry et al.); ``"margin"`` and ``"dlr"`` are available.

Early stop with batch compaction (``early_stop=True``): the logits of each step's
forward pass tell which samples are already fooled; those are recorded (that
iterate is their adversarial) and dropped from the active batch with
``index_select``, so they cost no further forward or backward pass. Samples do
not interact (the model is in eval mode), so the survivors' trajectories are the
same as without compaction. The last iterate of the last restart is returned
without an extra forward pass: the base class verifies it anyway.

Infinite or very large budgets are capped at the diameter of the [0, 1] box in
the attack's norm (``1``, ``sqrt(d)``, ``d``): a larger ball meets the box in the
same set, and the cap keeps step sizes finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from sweep.attacks.active import ActiveSet
from sweep.attacks.base import FixedAttack, confirm_fooled, is_fooled
from sweep.attacks.losses import LossFn, LossName, get_loss
from sweep.attacks.norms import Norm, batch_view, linf_bounds
from sweep.attacks.params import Check, Count, Exclusive, Positive

# The Madry lab's rule of thumb: a total travel of 2.5 eps over all steps.
DEFAULT_TRAVEL = 2.5


def loss_and_grad(
    model: nn.Module, adv: Tensor, labels: Tensor, targets: Tensor | None, loss_fn: LossFn
) -> tuple[Tensor, Tensor, Tensor]:
    """One forward and one backward pass: per-sample loss ``[b]``, logits, input gradient.

    Only the input is differentiated (``torch.autograd.grad``), never the parameters.
    """
    adv.requires_grad_(True)
    logits = model(adv)
    loss = loss_fn(logits, labels, targets)
    (grad,) = torch.autograd.grad(loss.sum(), adv)
    # fp32 whatever the search ran in (bf16 autocast: sweep.attacks.precision)
    return loss.detach().float(), logits.detach().float(), grad


def sparse_l1_direction(grad: Tensor, adv: Tensor, k: int) -> Tensor:
    """SLIDE direction (Tramer & Boneh 2019): ``sign(grad)`` on the top-``k`` movable
    coordinates by ``|grad|``, scaled to unit L1 norm; zero where nothing can move."""
    g = grad.flatten(1)
    a = adv.flatten(1)
    blocked = ((a <= 0) & (g < 0)) | ((a >= 1) & (g > 0))
    magnitude = g.abs().masked_fill(blocked, 0.0)
    values, index = magnitude.topk(k, dim=1)
    signs = g.gather(1, index).sign() * (values > 0)
    direction = torch.zeros_like(g).scatter_(1, index, signs)
    count = signs.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
    return (direction / count).view_as(grad)


class PGD(FixedAttack):
    """Projected gradient descent (Madry et al. 2018, arXiv:1706.06083).

    Args:
        norm: ``linf`` (default), ``l2`` or ``l1``.
        steps: gradient steps per restart; default 20.
        rel_stepsize: step size as a fraction of each sample's eps; default
            ``2.5 / steps``. Exclusive with ``step_size``.
        step_size: absolute step size (torchattacks' ``alpha``), the same for all
            samples; default ``None`` (use ``rel_stepsize``).
        restarts: random restarts, the best kept per sample; default 1.
        random_start: start at a random point of the ball; default ``True``.
        loss: ``ce`` (default), ``margin`` or ``dlr`` (see :mod:`sweep.attacks.losses`).
        l1_sparsity: L1 only: fraction of coordinates left still by each sparse
            step; default 0.95 (the top 5% move, at least one), as advertorch's
            ``SparseL1DescentAttack``.
        early_stop: drop fooled samples from the batch after each step; default
            ``True``. ``False`` attacks every sample for every step (the reference
            behaviour; same result, more compute).

    Shapes: images ``[B, C, H, W]`` in [0, 1]; labels, targets, eps ``[B]``.
    """

    name: ClassVar[str] = "pgd"
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2", "l1")
    supports_targeted: ClassVar[bool] = True
    bf16_search: ClassVar[bool] = True
    checks: ClassVar[tuple[Check, ...]] = (Exclusive("rel_stepsize", "step_size"),)

    def __init__(
        self,
        norm: Norm | None = None,
        steps: Count = 20,
        rel_stepsize: Positive | None = None,
        step_size: Positive | None = None,
        restarts: Count = 1,
        random_start: bool = True,
        loss: LossName = "ce",
        l1_sparsity: Annotated[float, Field(ge=0, lt=1)] = 0.95,
        early_stop: bool = True,
    ) -> None:
        super().__init__(norm)
        self.loss_fn = get_loss(loss)
        self.steps = steps
        self.rel_stepsize = DEFAULT_TRAVEL / steps if rel_stepsize is None else rel_stepsize
        self.step_size = step_size
        self.restarts = restarts
        self.random_start = random_start
        self.loss = loss
        self.l1_sparsity = l1_sparsity
        self.early_stop = early_stop

    # -- the three norm-specific pieces (sweep.attacks.norms.NORM_OPS) ------------
    def _start(self, x: Tensor, eps: Tensor, gen: torch.Generator) -> Tensor:
        if not self.random_start:
            return x.clone()
        return self.ops.random_start(x, eps, gen)

    def _step(
        self,
        adv: Tensor,
        grad: Tensor,
        x: Tensor,
        eps: Tensor,
        step: Tensor,
        lo: Tensor | None,
        hi: Tensor | None,
    ) -> Tensor:
        """Ascend the loss by one normalised step of size ``step`` ``[b, 1, ...]``, then
        project onto the ball and into [0, 1]."""
        if self.ops.ascent is None:  # l1: the sparse step
            k = max(1, round((1.0 - self.l1_sparsity) * x[0].numel()))
            adv = adv.addcmul_(step, sparse_l1_direction(grad, adv, k))
        else:
            adv = adv.addcmul_(step, self.ops.ascent(grad))
        if lo is not None and hi is not None:
            # linf: lo/hi fold the ball and the box into one clamp, the cheapest projection
            return torch.clamp(adv, lo, hi)
        return self.ops.project(x, adv, eps)

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
        eps = self.ops.box_limit(eps, images)
        if self.step_size is not None:
            step = torch.full_like(eps, self.step_size)
        else:
            step = eps * self.rel_stepsize
        rounds = ActiveSet(**ActiveSet.outcome(images))
        with torch.enable_grad():
            for restart in range(self.restarts):
                last = restart == self.restarts - 1
                rows = rounds.rows
                found, fooled = self._descend(
                    model,
                    images[rows],
                    labels[rows],
                    eps[rows],
                    step[rows],
                    None if targets is None else targets[rows],
                    generator,
                    check_last=not last,
                    parent=rounds,
                )
                # later restarts only attack the unbroken samples
                if not rounds.take_round(found, fooled):
                    break
        return rounds.result

    def _descend(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        step: Tensor,
        t: Tensor | None,
        gen: torch.Generator,
        check_last: bool,
        parent: ActiveSet,
    ) -> tuple[Tensor, Tensor]:
        """One restart on ``n`` samples. Returns ``(adv [n, ...], fooled [n])``: the
        first fooling iterate where one was seen, else the last iterate (whose
        success is checked only when ``check_last``; the base class verifies all).
        ``x`` holds the active samples of ``parent``, the restarts' set."""
        lo, hi = linf_bounds(x, eps) if self.norm == "linf" else (None, None)
        s = _Descent(
            **ActiveSet.outcome(x, parent), x=x, y=y, eps=eps, step=batch_view(step, x), t=t, lo=lo,
            hi=hi, adv=self._start(x, eps, gen).detach(),
        )
        for _ in range(self.steps):
            _, logits, s.grad = loss_and_grad(model, s.adv, s.y, s.t, self.loss_fn)
            s.adv = s.adv.detach()
            # bf16 search: only an fp32-confirmed sample leaves the batch
            fooled = confirm_fooled(model, s.adv, is_fooled(logits.argmax(1), s.y, s.t), s.y, s.t)
            if self.early_stop:
                if not s.record_and_drop(fooled, s.adv):  # the one host sync per step
                    return s.result, s.fooled
            else:
                s.record(fooled & ~s.fooled[s.rows], s.adv)  # the first fooling iterate
            s.adv = self._step(s.adv, s.grad, s.x, s.eps, s.step, s.lo, s.hi)
        if check_last:
            with torch.no_grad():
                fooled = confirm_fooled(
                    model, s.adv, is_fooled(model(s.adv).argmax(1), s.y, s.t), s.y, s.t
                )
            # record the fooling last iterate itself: later restarts skip this sample,
            # so whatever is recorded here is what the base class verifies
            s.record(fooled & ~s.fooled[s.rows], s.adv)
        # samples never seen fooled return their last iterate
        rest = ~s.fooled[s.rows]
        s.result[s.rows[rest]] = s.adv[rest]
        return s.result, s.fooled


@dataclass(eq=False)
class _Descent(ActiveSet):
    """One PGD restart's per-sample state (:class:`ActiveSet` compacts it)."""

    x: Tensor
    y: Tensor
    eps: Tensor
    step: Tensor  # [n, 1, ...]
    t: Tensor | None
    lo: Tensor | None  # linf: the ball and the box as per-coordinate bounds
    hi: Tensor | None
    adv: Tensor
    grad: Tensor | None = None


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2015, arXiv:1412.6572).

    One step of size eps from the clean image, no random start: ``linf`` moves
    every pixel by ``eps * sign(grad)`` (``sign(0) = 0``, as torchattacks); ``l2``
    moves by ``eps * grad / ||grad||_2``. Then clipped to [0, 1].

    Args:
        norm: ``linf`` (default) or ``l2``.
        loss: ``ce`` (default, as the paper), ``margin`` or ``dlr``.
    """

    name: ClassVar[str] = "fgsm"
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2")

    def __init__(self, norm: Norm | None = None, loss: LossName = "ce") -> None:
        super().__init__(norm, steps=1, rel_stepsize=1.0, restarts=1, random_start=False, loss=loss)
