"""Per-sample attack losses on logits, each one to be *maximised* by the attacker.

Every loss maps ``logits`` ``[B, K]`` (raw logits, not softmax: softmax outputs
weaken gradient attacks) and ``labels`` ``[B]`` to a per-sample loss ``[B]``, so
that a batch can be differentiated with one ``loss.sum()`` while each sample's
gradient stays its own (the model is in eval mode: samples do not interact).
With ``targets`` ``[B]`` the targeted variant is returned; it grows as the target
class gains on the others.

- ``ce``: cross-entropy (Goodfellow et al. 2015, arXiv:1412.6572; Madry et al.
  2018, arXiv:1706.06083). Targeted: ``-CE(logits, target)``. It saturates on
  confident models (the gradient underflows), which is why margin losses exist.
- ``margin``: the logit margin of Carlini & Wagner, "Towards Evaluating the
  Robustness of Neural Networks" (2017), arXiv:1608.04644, without the ``-kappa``
  clamp (the attack stops a sample once it is fooled, so the clamp would only
  flatten the gradient). Untargeted ``max_{j != y} z_j - z_y``; targeted
  ``z_t - max_{j != t} z_j``. Positive exactly when the sample is fooled.
- ``dlr``: the Difference of Logits Ratio of Croce & Hein, "Reliable evaluation of
  adversarial robustness with an ensemble of diverse parameter-free attacks"
  (2020), arXiv:2003.01690, eq. (5) and the targeted version of section 3.2:
  ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)`` and
  ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` (``pi`` sorts logits in
  decreasing order). Invariant to shifting and scaling the logits. Needs at least
  3 classes (targeted: 4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor
from torch.nn import functional as F

LossFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]

# Added to DLR denominators as in the reference implementation, so that a flat
# logit vector (pi1 == pi3) gives a finite loss.
DLR_DENOMINATOR_EPS = 1e-12


def ce(logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
    """Cross-entropy ``[B]``; targeted: ``-CE(logits, targets)``."""
    if targets is None:
        return F.cross_entropy(logits, labels, reduction="none")
    return -F.cross_entropy(logits, targets, reduction="none")


def other_logits(logits: Tensor, cls: Tensor) -> Tensor:
    """``[B, K]`` ``logits`` with class ``cls`` ``[B]`` masked to ``-inf``: what "the best
    other class" ranks over (its max, arg-max or top-k). Every kernel that needs the
    best other logit (margins, DeepFool's candidates, FAB's rival, FAB-T's and APGD-T's
    targets, L-BFGS's loss) takes it from here."""
    return logits.scatter(1, cls.unsqueeze(1), float("-inf"))


def best_other(logits: Tensor, cls: Tensor) -> Tensor:
    """``max_{j != cls} z_j`` per sample ``[B]``."""
    return other_logits(logits, cls).amax(dim=1)


def candidate_classes(logits: Tensor, labels: Tensor, candidates: int) -> Tensor:
    """``[B, candidates - 1]``: the highest-scoring classes other than the label, best
    first (DeepFool's candidates, FAB-T's and APGD-T's targets)."""
    return other_logits(logits, labels).topk(candidates - 1, dim=1).indices


def margin(logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
    """CW logit margin ``[B]``: ``max_{j!=y} z_j - z_y``; targeted ``z_t - max_{j!=t} z_j``."""
    if targets is None:
        z_y = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
        return best_other(logits, labels) - z_y
    z_t = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    return z_t - best_other(logits, targets)


def dlr(logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
    """Difference of Logits Ratio ``[B]`` (Croce & Hein 2020, arXiv:2003.01690).

    Raises:
        ValueError: fewer than 3 classes (untargeted) or 4 classes (targeted); the
            denominator uses the 3rd (and 4th) largest logit.
    """
    num_classes = logits.shape[1]
    needed = 3 if targets is None else 4
    if num_classes < needed:
        kind = "untargeted" if targets is None else "targeted"
        raise ValueError(
            f"the {kind} DLR loss needs at least {needed} classes, the model has "
            f"{num_classes}; use loss='ce' or 'margin'"
        )
    top = logits.topk(4 if targets is not None else 3, dim=1).values
    z_y = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    if targets is None:
        denom = top[:, 0] - top[:, 2] + DLR_DENOMINATOR_EPS
        return -(z_y - best_other(logits, labels)) / denom
    z_t = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    denom = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_DENOMINATOR_EPS
    return -(z_y - z_t) / denom


LossName = Literal["ce", "margin", "dlr"]  # the keys of LOSSES: what `loss:` may say
LOSSES: dict[LossName, LossFn] = {"ce": ce, "margin": margin, "dlr": dlr}


def get_loss(name: str) -> LossFn:
    """The loss registered as ``name``; a clear ``ValueError`` lists the valid ones."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
