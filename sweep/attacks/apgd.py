"""Auto-PGD (APGD) and APGD-T: PGD with momentum and a budget-aware step-size schedule.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks" (ICML 2020), arXiv:2003.01690, Algorithm 1, with
the reference implementation (github.com/fra31/auto-attack, ``autopgd_base.py``)
where the paper leaves a detail open. Norms ``linf``, ``l2`` and ``l1``; the L1
version is Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on
image classifiers" (ICML 2021), arXiv:2103.01208.

Defaults for ``linf`` / ``l2`` (the paper's):

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
  or the targeted DLR of section 3.2; ``restarts = 1``; random start
  ``x + eps * t / ||t||`` with ``t`` uniform in ``[-1, 1]^d`` (L-inf) or Gaussian
  (L2), as the reference.

L1 (arXiv:2103.01208, as the reference's ``norm='L1'`` branch):

- start: a Gaussian draw ``x + t`` projected onto the intersection of the L1 ball
  and the [0, 1] box (:func:`sweep.attacks.norms.project_l1_box`, exact);
- step: ``x_{k+1} = P(x_k + eta * sign(g_k) / ||sign(g_k)||_1)`` where ``g_k`` keeps
  the coordinates whose ``|grad|`` is among the top ``topk * d`` (ties kept), ``P``
  the exact projection onto ball and box; no momentum (the reference's L1 branch
  has none);
- ``eta = 1 * eps`` at the start (``rel_stepsize = 1.0``); ``topk = 0.2`` at the
  start;
- a checkpoint every ``max(int(0.04 N), 1)`` iterations (4 for ``N = 100``): with
  ``s`` the number of non-zero coordinates of the best point's perturbation, ``topk
  = s / d / 1.5``; if ``s`` fell below 0.95 of its value at the previous checkpoint
  (``d`` before the first) the step size resets to ``eps`` and the sample restarts
  from its best point, else the step size is divided by 1.5; it stays within
  ``[eps / 10, eps]``.
- ``large_eps = True`` (off by default; AutoAttack's ``standard`` L1 version turns
  it on, as the reference's ``use_largereps``): the iterations are split 30/30/40%
  over the radii 3 eps, 2 eps, eps; a Gaussian start projected onto the 3 eps ball,
  each stage warm-started from the previous one's highest-loss point projected onto
  its own ball (sparsity and ``topk`` taken from that point), only the last stage's
  iterates can count as adversarials.

EOT (Athalye et al., "Obfuscated Gradients Give a False Sense of Security", ICML
2018, arXiv:1802.00420), for randomized models: ``eot_iter`` forward/backward
passes per iteration at the same point; the step follows their mean input gradient
(as the reference, whose ``rand`` version uses 20). Unlike the reference, which
takes the loss and the prediction of the last pass only, the step-size rules use the
mean loss over the passes, and a sample counts as fooled only if every pass
misclassifies it: one lucky draw neither promotes a point to "best" nor stops the
search of a sample the final verification (one more draw) would call robust.
``eot_iter = 1`` runs exactly the plain algorithm.

The reference's quirks are kept so that results match it sample for sample (the
tests check this against torchattacks' port): the first oscillation test compares
the first iterate's loss with 0 (an unset entry of the reference's loss buffer)
rather than with the starting point's loss. The one difference, which cannot weaken
the attack on a deterministic model: a sample is dropped from the batch as soon as a
forward pass shows it fooled (``early_stop=True``) -- every per-sample state (iterate,
previous iterate, gradient, best point, best loss, step size, counters) is compacted
with the same ``index_select``, so the survivors follow the same trajectory as in a
full batch. (On a randomized model with ``eot_iter = 1`` one lucky draw ends a
sample's search where the reference keeps going: use ``eot_iter > 1`` there.)

APGD-T (:class:`APGDT`, arXiv:2003.01690 sec. 3.2 and the reference's
``APGDAttack_targeted``) is an *untargeted* evaluation attack built on the same
kernel: it runs targeted-DLR APGD once per target class, the top
``n_target_classes`` classes by clean logit other than the label, each run on the
samples still correctly classified, and keeps the first misclassifying adversarial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from sweep.attacks.active import ActiveSet
from sweep.attacks.base import FixedAttack, confirm_fooled, is_fooled
from sweep.attacks.losses import candidate_classes, get_loss
from sweep.attacks.norms import Norm, batch_view, linf_bounds, lp_norm, project_l1_box
from sweep.attacks.params import Check, Count, Fraction, Needs, Positive
from sweep.attacks.pgd import loss_and_grad

ApgdLoss = Literal["ce", "dlr"]
# The reference's initial step size, as a multiple of eps, per norm.
REL_STEPSIZE = {"linf": 2.0, "l2": 2.0, "l1": 1.0}
# L1 (arXiv:2103.01208, the reference's values): the fraction of coordinates the first
# sparse step moves; at a checkpoint topk = sparsity / L1_TOPK_DIVISOR; the step size
# shrinks by L1_STEP_DECAY between sparsity drops and never below eps / L1_MIN_STEP_RATIO.
L1_TOPK_START = 0.2
L1_TOPK_DIVISOR = 1.5
L1_STEP_DECAY = 1.5
L1_MIN_STEP_RATIO = 10.0
L1_SPARSITY_DROP = 0.95
L1_CHECK_EVERY = 0.04
# The reference's ``use_largereps`` (L1): radii 3, 2, 1 x eps over 30/30/40% of the steps.
LARGE_EPS_RADII = (3.0, 2.0, 1.0)
LARGE_EPS_SHARE = 0.3


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


def l1_checkpoints(steps: int) -> list[int]:
    """APGD-L1's checkpoints: every ``max(int(0.04 N), 1)`` iterations (the reference's
    fixed interval; arXiv:2103.01208). For ``N = 100``: ``[4, 8, ..., 100]``."""
    every = max(int(L1_CHECK_EVERY * steps), 1)
    return list(range(every, steps + 1, every))


class APGD(FixedAttack):
    """Auto-PGD (Croce & Hein 2020, arXiv:2003.01690; L1: arXiv:2103.01208).

    Args:
        norm: ``linf`` (default), ``l2`` or ``l1``.
        steps: iterations per restart; default 100 (the paper's budget).
        restarts: random restarts, each on the samples still unbroken, so the
            best is kept per sample; default 1.
        loss: ``ce`` (default) or ``dlr``; targeted variants when ``targets`` are
            given. DLR needs >= 3 classes (targeted >= 4).
        rho: oscillation threshold of condition 1 (``linf``/``l2``); default 0.75.
        momentum: ``alpha`` (``linf``/``l2``; L1 has none); default 0.75.
        rel_stepsize: initial step size as a multiple of eps; default ``None``: the
            reference's, 2.0 for ``linf``/``l2`` and 1.0 for ``l1``.
        early_stop: drop fooled samples from the batch; default ``True``.
        eot_iter: EOT passes per iteration (Athalye et al. 2018, arXiv:1802.00420),
            for randomized models; default 1 (off). AutoAttack's ``rand`` uses 20.
        large_eps: ``l1`` only: the reference's 3 eps / 2 eps / eps schedule
            (``use_largereps``, on in AutoAttack's ``standard`` L1); default ``False``.

    Shapes: images ``[B, C, H, W]`` in [0, 1]; labels, targets, eps ``[B]``.
    """

    name: ClassVar[str] = "apgd"
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2", "l1")
    supports_targeted: ClassVar[bool] = True
    # Measured (docs/BENCHMARKS.md, issue 13): a bf16 search left cnn32 2.3 points more
    # robust at one epsilon; its step-size schedule compares losses, which bf16 logits
    # quantise. Its early stops are fp32-confirmed, but it searches in fp32.
    bf16_search: ClassVar[bool] = False
    # the schedule runs 3 eps, 2 eps, eps: one step at least per radius (LARGE_EPS_RADII)
    checks: ClassVar[tuple[Check, ...]] = (Needs("large_eps", norm="l1", param="steps", minimum=3),)

    def __init__(
        self,
        norm: Norm | None = None,
        steps: Count = 100,
        restarts: Count = 1,
        loss: ApgdLoss = "ce",
        rho: Fraction = 0.75,
        momentum: Fraction = 0.75,
        rel_stepsize: Positive | None = None,
        early_stop: bool = True,
        eot_iter: Count = 1,
        large_eps: bool = False,
    ) -> None:
        super().__init__(norm)
        if rel_stepsize is None:
            rel_stepsize = REL_STEPSIZE[self.norm]
        self.steps = steps
        self.restarts = restarts
        self.loss = loss
        self.loss_fn = get_loss(loss)
        self.rho = rho
        self.momentum = momentum
        self.rel_stepsize = rel_stepsize
        self.early_stop = early_stop
        self.eot_iter = eot_iter
        self.large_eps = large_eps
        self.checkpoints = l1_checkpoints(steps) if self.norm == "l1" else checkpoints(steps)

    # -- norm-specific pieces (sweep.attacks.norms.NORM_OPS) ---------------------------
    def _draw(self, x: Tensor, gen: torch.Generator) -> Tensor:
        assert self.ops.draw is not None  # every norm APGD supports has one
        return self.ops.draw(x.shape, gen, x)

    def _start(self, x: Tensor, eps: Tensor, gen: torch.Generator) -> Tensor:
        t = self._draw(x, gen)  # uniform (L-inf) or Gaussian, as the reference
        if self.norm == "l1":  # projected onto ball and box (reference)
            return project_l1_box(x, x + t, eps)
        scale = lp_norm(t, self.norm)
        return (x + t * batch_view(eps / (scale + 1e-12), x)).clamp(0.0, 1.0)

    def _direction(self, grad: Tensor) -> Tensor:
        assert self.ops.ascent is not None  # linf, l2 (l1 takes _l1_step)
        return self.ops.ascent(grad)

    def _project(
        self, x: Tensor, adv: Tensor, eps: Tensor, lo: Tensor | None, hi: Tensor | None
    ) -> Tensor:
        if lo is not None and hi is not None:  # linf: ball and box in one clamp
            return torch.clamp(adv, lo, hi)
        return self.ops.project(x, adv, eps)

    def _l1_step(self, s: _APGDState) -> Tensor:
        """The sparse L1 step: the top ``topk * d`` coordinates by ``|grad|`` move, by
        ``step / k`` each in the sign of their gradient, then the exact projection."""
        grad = s.grad.flatten(1)
        dim = grad.shape[1]
        magnitude = grad.abs()
        rank = ((1.0 - s.topk) * dim).clamp(0, dim - 1).long()  # as the reference
        threshold = magnitude.sort(dim=1).values.gather(1, rank.unsqueeze(1))
        signs = (grad * (magnitude >= threshold)).sign()
        moved = s.adv.flatten(1) + batch_view(s.step, grad) * signs / (
            signs.abs().sum(dim=1, keepdim=True) + 1e-10
        )
        return project_l1_box(s.x, moved.view_as(s.x), s.eps)

    # -- EOT ----------------------------------------------------------------------------
    def _loss_grad(
        self, model: nn.Module, adv: Tensor, y: Tensor, t: Tensor | None, hit: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample loss, input gradient and fooled flag at ``adv``, averaged over
        ``eot_iter`` passes (fooled: by every pass). ``hit`` is the success criterion's
        target (``None``: misclassification), ``t`` the loss's."""
        loss, logits, grad = loss_and_grad(model, adv, y, t, self.loss_fn)
        fooled = is_fooled(logits.argmax(1), y, hit)
        if self.eot_iter == 1:
            return loss, grad, confirm_fooled(model, adv, fooled, y, hit)
        for _ in range(self.eot_iter - 1):
            more_loss, logits, more_grad = loss_and_grad(model, adv, y, t, self.loss_fn)
            loss, grad = loss + more_loss, grad + more_grad
            fooled &= is_fooled(logits.argmax(1), y, hit)
        # bf16 search: only an fp32-confirmed sample counts as fooled (and leaves)
        return loss / self.eot_iter, grad / self.eot_iter, confirm_fooled(model, adv, fooled, y, hit)

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
        rounds = [targets] * self.restarts
        return self._rounds(model, images, labels, eps, rounds, generator, hit_target=True)

    def _rounds(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        eps: Tensor,
        rounds: Sequence[Tensor | None],
        generator: torch.Generator,
        hit_target: bool,
    ) -> Tensor:
        """One :meth:`_single_run` per entry of ``rounds`` (the loss's targets ``[b]``,
        or ``None``), each on the samples no earlier round fooled; the first fooling
        adversarial is kept per sample, else the last round's highest-loss point."""
        eps = self.ops.box_limit(eps, images)
        state = ActiveSet(**ActiveSet.outcome(images))
        with torch.enable_grad():
            for targets in rounds:
                rows = state.rows
                sub_t = None if targets is None else targets[rows]
                run = self._large_eps_run if self.large_eps else self._single_run
                found, fooled = run(
                    model, images[rows], labels[rows], eps[rows], sub_t, generator, hit_target,
                    parent=state,
                )
                if not state.take_round(found, fooled):
                    break
        return state.result

    def _single_run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        t: Tensor | None,
        gen: torch.Generator,
        hit_target: bool = True,
        start: Tensor | None = None,
        steps: int | None = None,
        search_only: bool = False,
        parent: ActiveSet | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Algorithm 1 on ``n`` samples. Returns ``(adv [n, ...], fooled [n])``: the
        first fooling iterate where one was found, else the highest-loss point.
        ``t`` targets the loss; success is hitting it if ``hit_target``, else any
        misclassification (APGD-T). ``start`` replaces the random start, ``steps``
        ``self.steps``; ``search_only`` ignores success and returns every sample's
        highest-loss point (a stage of :meth:`_large_eps_run`)."""
        steps = self.steps if steps is None else steps
        lo, hi = linf_bounds(x, eps) if self.norm == "linf" else (None, None)

        adv = self._start(x, eps, gen) if start is None else start.clamp(0.0, 1.0)
        loss, grad, fooled = self._loss_grad(model, adv, y, t, t if hit_target else None)
        if search_only:
            fooled = torch.zeros_like(fooled)
        adv = adv.detach()
        s = _APGDState(
            **ActiveSet.outcome(x, parent),
            x=x,
            y=y,
            eps=eps,
            t=t,
            hit=t if hit_target else None,
            lo=lo,
            hi=hi,
            adv=adv,
            adv_old=adv.clone(),
            grad=grad,
            best=adv.clone(),
            grad_best=grad.clone(),
            loss_best=loss.clone(),
            # The reference's first increase test compares f(x^(1)) with an unset (zero)
            # entry of its loss buffer, not with f(x^(0)); kept so results match it.
            loss_prev=torch.zeros_like(loss),
            loss_best_last=loss.clone(),  # best loss at the previous checkpoint
            reduced_last=torch.ones(x.shape[0], dtype=torch.bool, device=x.device),
            increases=torch.zeros(x.shape[0], dtype=torch.int32, device=x.device),
            step=eps * self.rel_stepsize,
        )
        if self.norm == "l1":
            if start is None:
                s.topk = torch.full_like(eps, L1_TOPK_START)
                s.sparsity_last = torch.full_like(eps, float(x[0].numel()))
            else:  # a warm start: its own sparsity, as the reference's ``x_init``
                s.sparsity_last = (adv != x).flatten(1).sum(dim=1).to(eps.dtype)
                s.topk = s.sparsity_last / x[0].numel() / L1_TOPK_DIVISOR

        if not self._record(s, fooled):
            return s.result, s.fooled

        ckpts = set(l1_checkpoints(steps) if self.norm == "l1" else self.checkpoints)
        last_ckpt = 0
        for i in range(steps):
            with torch.no_grad():
                adv = s.adv
                if self.norm == "l1":
                    new = self._l1_step(s)
                else:
                    a = self.momentum if i > 0 else 1.0
                    sv = batch_view(s.step, s.x)
                    z = self._project(
                        s.x, adv + sv * self._direction(s.grad), s.eps, s.lo, s.hi
                    )
                    moved = adv + a * (z - adv) + (1.0 - a) * (adv - s.adv_old)
                    new = self._project(s.x, moved, s.eps, s.lo, s.hi)
            s.adv_old = adv
            loss, grad, fooled = self._loss_grad(model, new, s.y, s.t, s.hit)
            if search_only:
                fooled = torch.zeros_like(fooled)
            new = new.detach()
            s.adv, s.grad = new, grad
            s.increases += loss > s.loss_prev
            s.loss_prev = loss
            improved = loss > s.loss_best
            iv = batch_view(improved, new)
            s.best = torch.where(iv, new, s.best)
            s.grad_best = torch.where(iv, grad, s.grad_best)
            s.loss_best = torch.where(improved, loss, s.loss_best)

            if not self._record(s, fooled):
                return s.result, s.fooled

            if i + 1 in ckpts:
                gap = i + 1 - last_ckpt
                last_ckpt = i + 1
                reduce = self._l1_checkpoint(s) if self.norm == "l1" else self._checkpoint(s, gap)
                rv = batch_view(reduce, s.adv)
                s.adv = torch.where(rv, s.best, s.adv)  # restart from the best point
                s.grad = torch.where(rv, s.grad_best, s.grad)

        # never fooled: return the highest-loss point (the base class verifies it)
        rest = ~s.fooled[s.rows]
        s.result[s.rows[rest]] = s.best[rest]
        return s.result, s.fooled

    def _large_eps_run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        t: Tensor | None,
        gen: torch.Generator,
        hit_target: bool = True,
        parent: ActiveSet | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The reference's ``use_largereps`` (L1): radii 3, 2, 1 x eps over
        ``ceil(0.3 N)``, ``ceil(0.3 N)`` and the remaining iterations, each stage
        warm-started from the previous one's highest-loss point; only the last stage,
        at ``eps``, can find adversarials."""
        share = math.ceil(LARGE_EPS_SHARE * self.steps)
        stages = list(zip(LARGE_EPS_RADII, (share, share, self.steps - 2 * share), strict=True))

        def draw() -> Tensor:
            return self._draw(x, gen)

        point = project_l1_box(x, x + draw(), eps * stages[0][0])
        for radius, steps in stages[:-1]:
            point = project_l1_box(x, point, eps * radius)
            # the reference draws a random start in every stage and then discards it for
            # the warm start: drawn here too, so the seeded streams stay aligned with it
            draw()
            point, _ = self._single_run(
                model, x, y, eps * radius, t, gen, hit_target, start=point, steps=steps,
                search_only=True,
            )
        point = project_l1_box(x, point, eps)
        draw()
        return self._single_run(
            model, x, y, eps, t, gen, hit_target, start=point, steps=stages[-1][1], parent=parent
        )

    def _checkpoint(self, s: _APGDState, gap: int) -> Tensor:
        """L-inf / L2: halve the step of the samples meeting condition 1 or 2; returns
        them (they restart from their best point)."""
        oscillating = s.increases <= self.rho * gap
        stalled = ~s.reduced_last & (s.loss_best_last >= s.loss_best)
        reduce = oscillating | stalled
        s.reduced_last = reduce
        s.loss_best_last = s.loss_best.clone()
        s.increases = torch.zeros_like(s.increases)
        s.step = torch.where(reduce, s.step / 2, s.step)
        return reduce

    def _l1_checkpoint(self, s: _APGDState) -> Tensor:
        """L1 (arXiv:2103.01208, the reference's rule): adapt ``topk`` to the best
        point's sparsity; where the sparsity fell, reset the step to its initial size
        and restart from the best point (returned), else shrink the step."""
        dim = s.x[0].numel()
        sparsity = (s.best != s.x).flatten(1).sum(dim=1).to(s.eps.dtype)
        dropped = sparsity / s.sparsity_last < L1_SPARSITY_DROP
        s.topk = sparsity / dim / L1_TOPK_DIVISOR
        full = s.eps * self.rel_stepsize
        step = torch.where(dropped, full, s.step / L1_STEP_DECAY)
        s.step = torch.minimum(torch.maximum(step, full / L1_MIN_STEP_RATIO), full)
        s.sparsity_last = sparsity
        return dropped

    def _record(self, s: _APGDState, fooled: Tensor) -> bool:
        """Store newly fooled iterates; with early stop, drop them from the state.
        ``False`` when no sample is left."""
        if self.early_stop:
            return s.record_and_drop(fooled, s.adv)
        s.record(fooled & ~s.fooled[s.rows], s.adv)
        return True


@dataclass(eq=False)
class _APGDState(ActiveSet):
    """The per-sample state of one APGD run, compacted together as samples leave."""

    x: Tensor
    y: Tensor
    eps: Tensor
    t: Tensor | None  # the loss's targets
    hit: Tensor | None  # the success criterion's targets (None: misclassification)
    lo: Tensor | None  # linf: the ball and the box as per-coordinate bounds
    hi: Tensor | None
    adv: Tensor
    adv_old: Tensor
    grad: Tensor
    best: Tensor  # highest-loss point
    grad_best: Tensor
    loss_best: Tensor
    loss_prev: Tensor
    loss_best_last: Tensor
    reduced_last: Tensor
    increases: Tensor
    step: Tensor
    topk: Tensor | None = None  # l1
    sparsity_last: Tensor | None = None  # l1


class APGDT(APGD):
    """APGD-T (Croce & Hein 2020, arXiv:2003.01690, sec. 3.2; the reference's
    ``APGDAttack_targeted``): untargeted, success = misclassification.

    For each of the top ``n_target_classes`` classes by clean logit other than the
    label (in that order), one targeted-DLR APGD run (``restarts`` of them) on the
    samples every earlier run left correctly classified; the first misclassifying
    adversarial is kept. Targets are chosen here from the clean logits, never given
    (``supports_targeted = False``). With fewer classes, all ``K - 1`` others are used;
    the targeted DLR loss needs ``K >= 4``.

    Args:
        norm: ``linf`` (default), ``l2`` or ``l1``.
        steps: iterations per target class; default 100 (the reference's ``n_iter``).
        restarts: runs per target class; default 1.
        n_target_classes: default 9 (AutoAttack's ``standard`` uses 9 for linf/l2
            and 5 for l1).
        rho, momentum, rel_stepsize, early_stop, eot_iter, large_eps: as :class:`APGD`.

    Shapes: images ``[B, C, H, W]`` in [0, 1]; labels, eps ``[B]``.
    """

    name: ClassVar[str] = "apgd-t"
    supports_targeted: ClassVar[bool] = False

    def __init__(
        self,
        norm: Norm | None = None,
        steps: Count = 100,
        restarts: Count = 1,
        n_target_classes: Count = 9,
        rho: Fraction = 0.75,
        momentum: Fraction = 0.75,
        rel_stepsize: Positive | None = None,
        early_stop: bool = True,
        eot_iter: Count = 1,
        large_eps: bool = False,
    ) -> None:
        super().__init__(
            norm, steps, restarts, "dlr", rho, momentum, rel_stepsize, early_stop, eot_iter,
            large_eps,
        )
        self.n_target_classes = n_target_classes

    def _run(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        eps: Tensor,
        targets: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        with torch.no_grad():
            logits = model(images)
        classes = logits.shape[1]
        if classes < 4:
            raise ValueError(
                f"{self.name}: the targeted DLR loss needs at least 4 classes, the model "
                f"has {classes}; use apgd with loss='ce'"
            )
        # the label ranks last; the reference sorts the clean logits of the samples it
        # attacks (all correctly classified) and takes ranks 2 .. n_target_classes + 1
        count = min(self.n_target_classes, classes - 1)
        ranked = candidate_classes(logits, labels, count + 1)
        rounds = [ranked[:, r] for r in range(count) for _ in range(self.restarts)]
        return self._rounds(model, images, labels, eps, rounds, generator, hit_target=False)
