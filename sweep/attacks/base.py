"""The attack base class: the bookkeeping every attack shares and none can skip.

Design after Foolbox 3 (Rauber et al. 2020): an attack's own search lives in
:meth:`Attack._run`; this class owns everything that makes a number trustworthy:

- the model is switched to eval mode for the call (and restored after), and only
  input gradients are ever taken (``torch.autograd.grad``), so parameters are untouched;
- per-sample epsilon (``eps`` a float or a ``[B]`` tensor);
- samples already misclassified (or already on target) are never attacked: they
  cost nothing and count as fooled with a zero perturbation;
- the adversarial batch is projected onto the epsilon ball and clipped to [0, 1];
- **verification**: the model is re-run on the final adversarial batch and the
  perturbation norm re-measured; ``success`` is what that re-run says, never the
  attack's internal belief. On GPUs a call runs in full fp32, search and verdicts,
  without the TF32 convolutions PyTorch allows by default
  (:func:`sweep.attacks.precision.full_precision`);
- randomness comes from a ``torch.Generator`` seeded per call, never the global RNG.

Two kinds of attack (Foolbox's split), two subclasses that own their curve
strategies: :class:`FixedAttack` searches inside a given epsilon (FGSM, PGD, APGD,
Square, One-Pixel, noise); :class:`MinimalAttack` searches for the smallest
perturbation that fools (CW, DeepFool, FMN, FAB, L-BFGS), so one run gives a whole
robustness curve.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from sweep.attacks.active import Nesting, nested_pairs
from sweep.attacks.norms import NORM_OPS, Norm, NormOps, lp_norm, project, within
from sweep.attacks.params import Check, checked, supported_norm
from sweep.attacks.precision import full_precision, low_precision_search, search_precision
from sweep.validation.names import STRATEGIES, Strategy

AttackKind = Literal["fixed", "minimal"]


@dataclass(frozen=True)
class AttackResult:
    """Verified outcome of one attack call on a batch of ``B`` samples.

    Attributes:
        adv: ``[B, ...]`` adversarial images in [0, 1], within ``eps`` of the inputs.
        success: ``[B]`` bool, the attack's own criterion: the model, re-run on
            ``adv``, misclassifies it (or predicts the target, if targeted) *and*
            ``norm <= eps``.
        norm: ``[B]`` perturbation ``||adv - images||`` in the attack's norm.
        pred: ``[B]`` the model's prediction on ``adv`` (the re-run); ``-1`` where
            its logits held NaN or inf (:func:`predict`): no class, so not
            robust, and ``sweep.analysis.sanity`` flags it.
        clean_pred: ``[B]`` the model's prediction on the clean images.
        robust: ``[B]`` bool, the robustness verdict (:func:`robust_verdict`):
            correct on the clean image *and* on ``adv`` with ``norm <= eps``. For a
            targeted attack it is not ``~success``: an adversarial that lands in a
            class other than the target misses the target but is still a
            misclassification within the budget, so the sample is not robust.
        broken_by: ``[B]`` int, for attacks made of members (:mod:`sweep.attacks.cascade`),
            the index of the member whose adversarial this is (``-1``: none broke the
            sample); ``None`` for single attacks.
    """

    adv: Tensor
    success: Tensor
    norm: Tensor
    pred: Tensor
    clean_pred: Tensor
    robust: Tensor
    broken_by: Tensor | None = None


@dataclass(frozen=True)
class CurveResult:
    """Verified outcome of an attack over ``K`` epsilons on ``B`` samples.

    Rows follow ``epsilons`` (Foolbox's ``(K, N)`` convention).

    The adversarial reported at each epsilon is the *worst* one found within
    that budget: one that misclassifies (and, if targeted, hits the target) is
    kept over one that does not, including one carried over from a smaller
    epsilon (:func:`keep_worst`), so ``robust`` can only fall as epsilon grows
    under the ``incremental`` strategy and minimization attacks.

    Attributes:
        epsilons: the ``K`` budgets, in the order given.
        success: ``[K, B]`` bool, the attack's criterion, verified as in
            :class:`AttackResult` (for a targeted attack: hit the target).
        pred: ``[K, B]`` prediction on the adversarial used at each epsilon.
        norm: ``[K, B]`` perturbation norm of that adversarial.
        clean_pred: ``[B]`` prediction on the clean images.
        labels: ``[B]`` true labels.
        min_norm: ``[B]`` for minimization attacks, the smallest fooling
            perturbation found (``inf`` where none was found); ``None`` otherwise.
        broken_by: ``[K, B]`` as :attr:`AttackResult.broken_by`, for the adversarial
            used at each epsilon; ``None`` for single attacks.
        adv: ``[K, B, ...]`` the adversarial each row's verdict was measured on (the
            verified tensor itself), when ``curve(..., keep_adv=True)``; else ``None``.
    """

    epsilons: tuple[float, ...]
    success: Tensor
    pred: Tensor
    norm: Tensor
    clean_pred: Tensor
    labels: Tensor
    min_norm: Tensor | None = None
    broken_by: Tensor | None = None
    adv: Tensor | None = None

    @property
    def robust(self) -> Tensor:
        """``[K, B]`` :func:`robust_verdict` at each epsilon: correct on the clean image
        and on that epsilon's adversarial, which lies within the budget."""
        eps = torch.tensor(self.epsilons, dtype=self.norm.dtype, device=self.norm.device)
        return robust_verdict(
            self.clean_pred.unsqueeze(0), self.pred, self.labels.unsqueeze(0),
            self.norm, eps.unsqueeze(1).expand_as(self.norm),
        )

    def robust_accuracy(self) -> list[float]:
        """Fraction of robust samples per epsilon (clean errors count as not robust)."""
        return self.robust.float().mean(dim=1).tolist()

    def success_rate(self) -> list[float]:
        """Per epsilon, the fraction of the samples correct on the clean image on which
        the attack met its own criterion (for a targeted attack: the targeted success
        rate); NaN if no sample is correct."""
        clean_ok = self.clean_pred == self.labels
        n = int(clean_ok.sum())
        if not n:
            return [float("nan")] * len(self.epsilons)
        return ((self.success & clean_ok.unsqueeze(0)).float().sum(dim=1) / n).tolist()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run with the model in eval mode (train-mode BatchNorm/dropout would make
    predictions depend on the batch); restore its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def predict(model: nn.Module, images: Tensor) -> Tensor:
    """``[B]`` arg-max predictions, without building a graph, in full fp32
    (:func:`full_precision`): every verdict of this package goes through here.

    Where the logits hold NaN or inf the prediction is :data:`NO_CLASS` (-1):
    ``argmax`` over NaN picks the NaN's index, so a model that answers NaN on
    perturbed inputs looked fooled (or, by chance, right) without a word. -1 is no
    label and no target: such a sample is never robust, and the worker marks its
    rows ``adv_nonfinite`` for the ``nonfinite_logits`` sanity flag."""
    with full_precision(images.device):
        logits = model(images)
    return logits.argmax(dim=1).masked_fill(~torch.isfinite(logits).all(dim=1), NO_CLASS)


NO_CLASS = -1
"""The prediction :func:`predict` gives for logits that hold NaN or inf."""


def is_fooled(pred: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
    """``[B]`` bool, the attack's criterion: untargeted ``pred != label``; targeted
    ``pred == target``. Not the robustness verdict: see :func:`robust_verdict`."""
    return pred != labels if targets is None else pred == targets


def confirm_fooled(
    model: nn.Module, adv: Tensor, fooled: Tensor, labels: Tensor, targets: Tensor | None
) -> Tensor:
    """An early-stop decision in fp32: ``fooled`` ``[n]`` as a kernel's search logits say
    for ``adv`` ``[n, ...]``. Under a low-precision search (``precision: bf16``) the rows
    it calls fooled are re-run in fp32 (:func:`predict`) and only the confirmed ones
    stay fooled, so no sample leaves the batch on a bf16 verdict; otherwise ``fooled``
    as it is (no extra pass)."""
    if not low_precision_search():
        return fooled
    idx = fooled.nonzero().squeeze(1)
    if not idx.numel():
        return fooled
    sub_t = None if targets is None else targets[idx]
    ok = is_fooled(predict(model, adv[idx].detach()), labels[idx], sub_t)
    return fooled.index_put((idx,), ok)


def robust_verdict(
    clean_pred: Tensor, pred: Tensor, labels: Tensor, norm: Tensor, eps: Tensor
) -> Tensor:
    """Robust = correct on the clean image, correct on the adversarial, and the
    adversarial within the budget (``norm <= eps`` up to :func:`within`'s tolerance).

    Robust accuracy is the model's accuracy on the adversarials (Szegedy et al.
    2014, arXiv:1312.6199; Croce & Hein 2020, arXiv:2003.01690), whichever class a
    misclassified adversarial lands in: for targeted attacks a missed target is
    not a robust sample. Tensors broadcast; returns bool.
    """
    return (clean_pred == labels) & (pred == labels) & within(norm, eps)


def keep_worst(carried: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Per sample, the worse of two verified adversarials, each ``(pred, norm,
    success, misclassified, *extra)`` of ``[B]`` tensors (``extra``, e.g. which
    cascade member found it, travels with the adversarial chosen).

    An adversarial that misclassifies within a smaller budget lies inside every
    larger one, so a curve carries it over rather than report a later, weaker
    search: misclassified beats correct, then hitting the attack's target beats
    missing it; on a tie the newer one is kept.
    """
    take_old = old_is_worse(carried, new)
    return tuple(torch.where(take_old, c, n) for c, n in zip(carried, new, strict=True))


def old_is_worse(carried: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> Tensor:
    """``[B]`` bool: where :func:`keep_worst` keeps the carried adversarial (so a caller
    can carry the images, which do not fit its ``[B]`` ``torch.where``, alike)."""

    def rank(r: tuple[Tensor, ...]) -> Tensor:
        return 2 * r[3].long() + r[2].long()

    return rank(carried) > rank(new)


def _pick(take_old: Tensor, old: Tensor, new: Tensor) -> Tensor:
    """Per sample, ``old`` where ``take_old`` else ``new`` (images ``[B, ...]``)."""
    return torch.where(take_old.view(-1, *([1] * (old.dim() - 1))), old, new)


def as_eps(eps: float | Tensor, batch: int, like: Tensor) -> Tensor:
    """Per-sample budget ``[B]`` on ``like``'s device and dtype; rejects negatives and NaN."""
    e = torch.as_tensor(eps, dtype=like.dtype, device=like.device)
    if e.dim() == 0:
        e = e.expand(batch)
    if e.shape != (batch,):
        raise ValueError(f"eps must be a float or a tensor of shape [{batch}], got {tuple(e.shape)}")
    if bool(torch.isnan(e).any()) or bool((e < 0).any()):
        raise ValueError("eps must be >= 0 and not NaN")
    return e.clone()


class Attack(abc.ABC):
    """Base class for batched attacks. An attack derives from :class:`FixedAttack` or
    :class:`MinimalAttack` (its kind, which owns the curve strategies) and implements
    :meth:`_run`.

    Class attributes a subclass sets:
        name: registry name (``"pgd"``).
        norms: norms it supports; the first is the default.
        supports_targeted: whether ``targets=`` is accepted.
        uses_gradients: whether it follows the model's input gradient (white box);
            gradient-free ones (score-based, random) beating every gradient attack
            is a sign of gradient masking (``sweep.analysis.sanity``).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[AttackKind]  # set by FixedAttack / MinimalAttack
    norms: ClassVar[tuple[Norm, ...]] = ("linf",)
    supports_targeted: ClassVar[bool] = True
    uses_gradients: ClassVar[bool] = True
    has_members: ClassVar[bool] = False  # results carry broken_by (sweep.attacks.cascade)
    # the search may run in bf16 (precision: bf16): every decision that ends a sample's
    # search goes through confirm_fooled; others search in fp32 whatever the spec says
    bf16_search: ClassVar[bool] = False
    # rules between hyper-parameters that no one annotation says (sweep.attacks.params),
    # applied by the constructor and, read from the source, by the spec's validation
    checks: ClassVar[tuple[Check, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # every attack's __init__ checks its arguments against its annotated signature,
        # the one declaration of its hyper-parameters (sweep.attacks.params)
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = checked(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __init__(self, norm: Norm | None = None) -> None:
        self.norm: Norm = supported_norm(self.name, self.norms, norm)  # type: ignore[assignment]

    @property
    def ops(self) -> NormOps:
        """The per-norm pieces of the attack's norm (:data:`sweep.attacks.norms.NORM_OPS`)."""
        return NORM_OPS[self.norm]

    # -- what a subclass writes -------------------------------------------------
    @abc.abstractmethod
    def _run(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        eps: Tensor,
        targets: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        """Search for adversarials of ``images`` ``[b, ...]``; return ``[b, ...]``.

        Called only on samples the model classifies correctly (or off target),
        with ``eps > 0`` (``inf`` for an unbounded minimization run). The model is
        in eval mode. Return the best candidate found per sample (the clean image
        where nothing was found); the base class projects, clips and verifies it,
        so a kernel may return a point slightly outside the ball. An attack made
        of members may return ``(adv, broken_by)`` with ``broken_by`` ``[b]`` the
        member index behind each candidate (``-1``: none).
        """

    def __repr__(self) -> str:
        """``PGD(norm='linf', steps=20, rel_stepsize=0.125, ...)``: every hyper-parameter of
        ``__init__`` with the value this object holds (defaults resolved, e.g. PGD's
        ``rel_stepsize``), so a printed attack says exactly how it will run."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in names if hasattr(self, n))
        return f"{type(self).__name__}({shown})"

    # -- public API -------------------------------------------------------------
    def __call__(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        eps: float | Tensor,
        *,
        targets: Tensor | None = None,
        seed: int = 0,
        clean_pred: Tensor | None = None,
    ) -> AttackResult:
        """Attack ``images`` ``[B, C, H, W]`` in [0, 1] with true ``labels`` ``[B]``.

        ``eps`` is a float or a ``[B]`` tensor (per-sample budgets). With
        ``targets`` ``[B]`` the attack is targeted (success = predicts the target).
        ``clean_pred`` ``[B]``: the model's predictions on ``images`` when the caller
        has them already (a curve, the sweep's worker), so the clean forward is not
        run again; they must be :func:`predict`'s on the same images.
        """
        return self._attack(model, images, labels, eps, targets, seed, None, clean_pred)

    def _attack(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        eps: float | Tensor,
        targets: Tensor | None,
        seed: int,
        nest: Nesting | None,
        clean_pred: Tensor | None = None,
    ) -> AttackResult:
        """:meth:`__call__`, with the rows as (sample, epsilon) pairs when ``nest`` is given
        (the ``nested`` curve strategy: :mod:`sweep.attacks.active`)."""
        batch = images.shape[0]
        self._check_inputs(images, labels, targets)
        eps_t = as_eps(eps, batch, images)
        # the search in full fp32 too, not only the verdicts: an early stop decided on
        # TF32 logits leaves samples that fp32 calls robust (full_precision's docstring)
        with eval_mode(model), full_precision(images.device):
            clean_pred = predict(model, images) if clean_pred is None else clean_pred
            already = is_fooled(clean_pred, labels, targets)
            active = ~already & (eps_t > 0)
            adv = images.detach().clone()
            broken_by = None
            if bool(active.any()):
                idx = active.nonzero().squeeze(1)
                gen = torch.Generator(device=images.device).manual_seed(int(seed))
                sub = images[idx].detach()
                pairs = nested_pairs(sub, None if nest is None else nest.take(idx))
                search = search_precision(images.device) if self.bf16_search else contextlib.nullcontext()
                with pairs, search:
                    found = self._run(
                        model, sub, labels[idx], eps_t[idx],
                        None if targets is None else targets[idx], gen,
                    )
                if isinstance(found, tuple):  # an attack made of members says which one
                    found, member = found
                    broken_by = torch.full((batch,), -1, dtype=torch.long, device=images.device)
                    broken_by[idx] = member.to(broken_by)
                adv[idx] = found.detach().to(adv.dtype)
            adv = project(images, adv, eps_t, self.norm)
            out = self._verify(model, images, labels, targets, adv, eps_t, clean_pred)
            if broken_by is None and self.has_members:
                broken_by = torch.full((batch,), -1, dtype=torch.long, device=images.device)
            if broken_by is not None:
                # a member's adversarial that the final check does not confirm broke nothing
                broken_by = torch.where(out.robust, torch.full_like(broken_by, -1), broken_by)
                out = dataclasses.replace(out, broken_by=broken_by)
            return out

    def curve(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        epsilons: Sequence[float],
        *,
        targets: Tensor | None = None,
        strategy: Strategy = "incremental",
        seed: int = 0,
        keep_adv: bool = False,
        clean_pred: Tensor | None = None,
    ) -> CurveResult:
        """Attack at every epsilon of ``epsilons``; rows of the result follow its order.

        ``keep_adv``: also return the adversarials themselves (:attr:`CurveResult.adv`,
        ``K`` copies of the batch: asked for only when they are stored).
        ``clean_pred`` ``[B]``: the clean predictions when the caller has them (as in
        :meth:`__call__`); no call of the curve then runs the clean forward.

        Minimization attacks run once, unbounded, and each epsilon checks the
        minimal adversarial projected onto its ball.

        Fixed-epsilon attacks: ``incremental`` (default) attacks, in ascending
        epsilon order, only the samples that survived the smaller epsilon; an
        adversarial valid at ``eps_i`` is valid at every larger epsilon, so it is
        carried over and the curve can only fall. ``independent`` attacks every
        epsilon from scratch, as papers report, by stacking the K copies of the
        batch (sample x epsilon) into one call with per-sample epsilons. ``nested``
        stacks the pairs too, but a pair found fooled at eps_k takes the pairs of its
        sample at larger epsilons with it (its adversarial is valid there), so the
        batch is full while there is work and no decided pair is attacked; the worst
        adversarial is carried as in ``incremental``, so the curve can only fall.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        eps_list = tuple(float(e) for e in epsilons)
        if not eps_list:
            raise ValueError("epsilons must not be empty")
        self._check_inputs(images, labels, targets)
        if clean_pred is not None and clean_pred.shape != labels.shape:
            raise ValueError(f"clean_pred must have shape {tuple(labels.shape)}, got {tuple(clean_pred.shape)}")
        with full_precision(images.device):
            return self._curve(model, images, labels, eps_list, targets, strategy, seed,
                               keep_adv=keep_adv, clean_pred=clean_pred)

    @abc.abstractmethod
    def _curve(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        eps_list: tuple[float, ...],
        targets: Tensor | None,
        strategy: Strategy,
        seed: int,
        *,
        keep_adv: bool = False,
        clean_pred: Tensor | None = None,
    ) -> CurveResult:
        """The curve strategy of the attack's kind: :class:`FixedAttack` or
        :class:`MinimalAttack` (inputs already checked, inside :func:`full_precision`)."""

    # -- internals --------------------------------------------------------------
    def _check_inputs(self, images: Tensor, labels: Tensor, targets: Tensor | None) -> None:
        if images.dim() < 2:
            raise ValueError(f"images must be [B, ...], got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape [{images.shape[0]}], got {tuple(labels.shape)}"
            )
        if targets is not None:
            if not self.supports_targeted:
                raise ValueError(f"{self.name} does not support targeted attacks")
            if targets.shape != labels.shape:
                raise ValueError(
                    f"targets must have shape {tuple(labels.shape)}, got {tuple(targets.shape)}"
                )

    def _verify(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        targets: Tensor | None,
        adv: Tensor,
        eps: Tensor,
        clean_pred: Tensor,
    ) -> AttackResult:
        """Re-run the model on ``adv`` and re-measure the norm: the only source of truth."""
        pred = predict(model, adv)
        norm = lp_norm(adv - images, self.norm)
        success = is_fooled(pred, labels, targets) & within(norm, eps)
        robust = robust_verdict(clean_pred, pred, labels, norm, eps)
        return AttackResult(
            adv=adv, success=success, norm=norm, pred=pred, clean_pred=clean_pred, robust=robust
        )


class FixedAttack(Attack):
    """An attack that searches within a given epsilon (PGD, APGD, Square, One-Pixel,
    noise, cascades). Curves: ``incremental`` (default) attacks ascending epsilons,
    each on the survivors of the previous one, and carries a fooling adversarial to
    the larger ones; ``independent`` attacks every epsilon from scratch; ``nested``
    attacks every (sample, epsilon) pair in one batch, a pair fooled at eps_k deciding
    the larger epsilons of its sample."""

    kind: ClassVar[AttackKind] = "fixed"

    def _curve(
        self, model, images, labels, eps_list, targets, strategy, seed, *, keep_adv=False, clean_pred=None
    ) -> CurveResult:
        if strategy == "incremental":
            return self._curve_incremental(model, images, labels, eps_list, targets, seed, keep_adv, clean_pred)
        return self._curve_stacked(model, images, labels, eps_list, targets, seed, clean_pred=clean_pred,
                                   nested=strategy == "nested", keep_adv=keep_adv)

    def _curve_incremental(
        self, model, images, labels, eps_list, targets, seed, keep_adv=False, clean_pred=None
    ) -> CurveResult:
        """Ascending epsilons, each attacking only the samples not yet fooled; the worst
        adversarial so far is carried to every larger epsilon (:func:`keep_worst`)."""
        k_total, batch = len(eps_list), images.shape[0]
        dev = images.device
        success = torch.zeros(k_total, batch, dtype=torch.bool, device=dev)
        pred = torch.empty(k_total, batch, dtype=torch.long, device=dev)
        norm = torch.zeros(k_total, batch, dtype=images.dtype, device=dev)
        fooled = torch.zeros(batch, dtype=torch.bool, device=dev)
        # misclassified within a smaller budget: for a targeted attack a sample can be
        # misclassified without hitting its target; it is attacked again at the next
        # epsilon, but its misclassifying adversarial is kept unless a worse one comes
        mis = torch.zeros(batch, dtype=torch.bool, device=dev)
        best_pred = torch.empty(batch, dtype=torch.long, device=dev)
        best_norm = torch.zeros(batch, dtype=images.dtype, device=dev)
        if clean_pred is None:
            with eval_mode(model):
                clean_pred = predict(model, images)
        best_pred.copy_(clean_pred)
        members = self.has_members
        best_by = torch.full((batch,), -1, dtype=torch.long, device=dev)
        broken_by = torch.full((k_total, batch), -1, dtype=torch.long, device=dev) if members else None
        # the adversarial behind best_pred: the clean image until one is found
        best_adv = images.detach().clone() if keep_adv else None
        advs: list[Tensor | None] = [None] * k_total
        for k in sorted(range(k_total), key=lambda i: eps_list[i]):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel():
                sub_t = None if targets is None else targets[todo]
                out = self(model, images[todo], labels[todo], eps_list[k], targets=sub_t, seed=seed,
                           clean_pred=clean_pred[todo])
                new_by = out.broken_by if out.broken_by is not None else best_by[todo]
                old = (best_pred[todo], best_norm[todo], fooled[todo], mis[todo], best_by[todo])
                new = (out.pred, out.norm, out.success, out.pred != labels[todo], new_by)
                if best_adv is not None:
                    best_adv[todo] = _pick(old_is_worse(old, new), best_adv[todo], out.adv.to(best_adv.dtype))
                best_pred[todo], best_norm[todo], fooled[todo], mis[todo], best_by[todo] = keep_worst(old, new)
            success[k], pred[k], norm[k] = fooled, best_pred, best_norm
            if broken_by is not None:
                broken_by[k] = best_by
            if best_adv is not None:
                advs[k] = best_adv.clone()
        adv = torch.stack(advs) if keep_adv else None  # type: ignore[arg-type]
        return CurveResult(eps_list, success, pred, norm, clean_pred, labels, broken_by=broken_by, adv=adv)

    def _curve_stacked(
        self, model, images, labels, eps_list, targets, seed, *, nested: bool,
        keep_adv: bool = False, clean_pred: Tensor | None = None,
    ) -> CurveResult:
        """The K copies of the batch (sample x epsilon) in one call with per-sample
        epsilons. ``independent``: every pair from scratch, as papers report each
        epsilon. ``nested``: a pair the kernel finds fooled at eps_k also decides the
        pairs of its sample at larger epsilons, which take its adversarial and leave the
        batch (:class:`sweep.attacks.active.Nesting`); every pair is verified on its own,
        and the worst verified adversarial so far is carried to the larger epsilons
        (:func:`keep_worst`), so the curve can only fall."""
        k_total, batch = len(eps_list), images.shape[0]
        dev = images.device
        eps = torch.tensor(eps_list, dtype=images.dtype, device=dev)
        order = sorted(range(k_total), key=lambda i: eps_list[i])
        nest = None
        if nested:
            rank = torch.empty(k_total, dtype=torch.long, device=dev)
            rank[order] = torch.arange(k_total, device=dev)
            nest = Nesting(
                torch.arange(batch, device=dev).repeat(k_total), rank.repeat_interleave(batch), batch
            )
        out = self._attack(
            model,
            images.repeat(k_total, *([1] * (images.dim() - 1))),
            labels.repeat(k_total),
            eps.repeat_interleave(batch),
            None if targets is None else targets.repeat(k_total),
            seed,
            nest,
            None if clean_pred is None else clean_pred.repeat(k_total),
        )
        success = out.success.view(k_total, batch).clone()
        pred = out.pred.view(k_total, batch).clone()
        norm = out.norm.view(k_total, batch).clone()
        by = None if out.broken_by is None else out.broken_by.view(k_total, batch).clone()
        # the adversarial behind each verdict, when asked for (stored adversarials)
        adv = out.adv.view(k_total, batch, *images.shape[1:]).clone() if keep_adv else None
        if nested:
            none = torch.full((batch,), -1, dtype=torch.long, device=dev)
            carried: tuple[Tensor, ...] | None = None
            previous = order[0]  # the epsilon whose (worst) adversarial is carried
            for k in order:
                now = (pred[k], norm[k], success[k], pred[k] != labels, none if by is None else by[k])
                if carried is not None:
                    if adv is not None:
                        adv[k] = _pick(old_is_worse(carried, now), adv[previous], adv[k])
                    now = keep_worst(carried, now)
                pred[k], norm[k], success[k] = now[0], now[1], now[2]
                if by is not None:
                    by[k] = now[4]
                carried, previous = tuple(t.clone() for t in now), k
        return CurveResult(
            eps_list, success, pred, norm, out.clean_pred[:batch], labels, broken_by=by, adv=adv
        )


class MinimalAttack(Attack):
    """An attack that searches for the smallest fooling perturbation (CW, DeepFool,
    FMN, FAB, L-BFGS). Curves: one unbounded run; each epsilon verifies the minimal
    adversarial projected onto its ball (``incremental`` and ``nested`` also carry a smaller
    epsilon's misclassification, :func:`keep_worst`); ``min_norm`` is filled."""

    kind: ClassVar[AttackKind] = "minimal"

    def _curve(
        self, model, images, labels, eps_list, targets, strategy, seed, *, keep_adv=False, clean_pred=None
    ) -> CurveResult:
        unbounded = self(model, images, labels, float("inf"), targets=targets, seed=seed, clean_pred=clean_pred)
        min_norm = torch.where(
            unbounded.success, unbounded.norm, torch.full_like(unbounded.norm, float("inf"))
        )
        k_total, batch = len(eps_list), images.shape[0]
        success = torch.zeros(k_total, batch, dtype=torch.bool, device=images.device)
        pred = torch.empty(k_total, batch, dtype=torch.long, device=images.device)
        norm = torch.zeros(k_total, batch, dtype=images.dtype, device=images.device)
        advs: list[Tensor | None] = [None] * k_total
        with eval_mode(model):
            carried: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
            carried_adv: Tensor | None = None
            for k in sorted(range(k_total), key=lambda i: eps_list[i]):
                eps_t = torch.full((batch,), eps_list[k], dtype=images.dtype, device=images.device)
                adv = project(images, unbounded.adv, eps_t, self.norm)
                out = self._verify(model, images, labels, targets, adv, eps_t, unbounded.clean_pred)
                now = (out.pred, out.norm, out.success, out.pred != labels)
                if strategy != "independent" and carried is not None:
                    # an adversarial valid at a smaller epsilon stays valid here
                    if keep_adv and carried_adv is not None:
                        adv = _pick(old_is_worse(carried, now), carried_adv, adv)
                    now = keep_worst(carried, now)
                pred[k], norm[k], success[k], _ = now
                carried, carried_adv = now, adv
                if keep_adv:
                    advs[k] = adv.detach().clone()
        return CurveResult(
            eps_list, success, pred, norm, unbounded.clean_pred, labels, min_norm=min_norm,
            adv=torch.stack(advs) if keep_adv else None,  # type: ignore[arg-type]
        )
