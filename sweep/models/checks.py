"""The field's model checks, run on a few samples before a sweep starts.

AutoAttack runs these before an evaluation and RobustBench requires them (Croce &
Hein 2020, arXiv:2003.01690; the reference ``autoattack/checks.py`` and its
``flags_doc.md``): each catches a model for which gradient attacks, and so the
robust accuracy they report, cannot be trusted as they are.

``randomized``
    Five forward passes on the same inputs differ (a prediction, or the
    L2-normalised logits by more than 1e-4). A randomised defence needs attacks
    with expectation over transformation (``eot_iter``; AutoAttack's ``rand``
    version), else every number is one random draw.
``probability_outputs``
    The outputs lie in [0, 1] and each row sums to 1: softmax probabilities, not
    logits. Cross-entropy on probabilities saturates and masks gradients.
``zero_gradients``
    The input gradient of the cross-entropy loss is zero (or not finite) for some
    correctly classified samples: gradient attacks get no signal there (masked
    gradients, e.g. input quantization). Trust black-box attacks (Square) there.
``too_few_classes``
    The DLR loss needs at least 3 classes, targeted DLR at least 4, and APGD-T /
    FAB-T need ``n_target_classes + 1`` classes.
``checks_failed``
    The model raised while the checks ran it on a batch (it passed the one-sample
    probe): the checks say nothing, and its cells will fail with the error.

(AutoAttack's ``check_dynamic``, which traces gradient calls inside ``forward``,
is not reproduced; its ``check_square_sr`` is :mod:`sweep.analysis.sanity`'s
``black_box_beats_gradient``.) Findings are warnings: a sweep still runs, and they
come back as sanity flags in ``sweep curves``, the report and MLflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

RANDOMIZED_PASSES = 5
RANDOMIZED_TOLERANCE = 1e-4  # max L2 difference of normalised logits (AutoAttack's alpha)
PROBABILITY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ModelFinding:
    """One check that fired: ``code`` (module docstring) and a sentence for people."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def check_model(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    classes_needed: Iterable[tuple[int, str]] = (),
) -> list[ModelFinding]:
    """Run every check on ``images`` ``[B, ...]`` (a few samples suffice).

    ``classes_needed``: ``(classes, why)`` per requirement of the spec's attacks
    (:func:`classes_needed`). The model is put in eval mode.
    """
    net.eval()
    findings: list[ModelFinding] = []
    with torch.no_grad():
        outputs = [net(images) for _ in range(RANDOMIZED_PASSES)]
    first = outputs[0]
    normed = [o / (o.norm(dim=1, keepdim=True) + 1e-10) for o in outputs]
    drift = max(float((n - normed[0]).norm(dim=1).max()) for n in normed[1:])
    flips = any(not torch.equal(o.argmax(1), first.argmax(1)) for o in outputs[1:])
    if flips or drift > RANDOMIZED_TOLERANCE:
        findings.append(ModelFinding(
            "randomized",
            f"{RANDOMIZED_PASSES} forward passes on the same {len(images)} inputs differ "
            f"(normalised logits by up to {drift:.2g}{', predictions too' if flips else ''}): "
            "a randomised model needs attacks with EOT (eot_iter, or autoattack version: rand)",
        ))
    rows_sum_to_one = bool(((first.sum(dim=1) - 1).abs() < PROBABILITY_TOLERANCE).all())
    if rows_sum_to_one and float(first.min()) > -PROBABILITY_TOLERANCE and float(first.max()) < 1 + PROBABILITY_TOLERANCE:
        findings.append(ModelFinding(
            "probability_outputs",
            "outputs lie in [0, 1] and sum to 1 per sample: probabilities, not logits; "
            "cross-entropy on softmax outputs masks gradients (return the logits)",
        ))
    zero, nonfinite, correct = _gradient_counts(net, images, labels)
    if zero or nonfinite:
        findings.append(ModelFinding(
            "zero_gradients",
            f"the input gradient of the cross-entropy loss is zero for {zero} and not finite "
            f"for {nonfinite} of {correct} correctly classified samples: gradient attacks get "
            "no signal there (masked gradients?); trust black-box attacks such as Square",
        ))
    num_classes = int(first.shape[1])
    for need, why in classes_needed:
        if num_classes < need:
            findings.append(ModelFinding(
                "too_few_classes",
                f"{why} needs at least {need} classes; the model has {num_classes}",
            ))
    return findings


def _gradient_counts(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[int, int, int]:
    """(zero, non-finite, correct): input-gradient counts over correctly classified samples."""
    x = images.detach().clone().requires_grad_(True)
    logits = net(x)
    correct = logits.argmax(1) == labels
    loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    flat = grad.flatten(1)[correct]
    finite = torch.isfinite(flat).all(dim=1)
    zero = finite & (flat.abs().sum(dim=1) == 0)
    return int(zero.sum()), int((~finite).sum()), int(correct.sum())


def classes_needed(label: str, params: Any, *, targeted: bool = False) -> list[tuple[int, str]]:
    """What an attack's settings ask of the number of classes, found in its
    parameters at any depth (a cascade's member entries included): ``loss: dlr``
    needs 3 classes (targeted: 4), ``n_target_classes: k`` needs ``k + 1`` (and 4,
    targeted DLR)."""
    out: list[tuple[int, str]] = []

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            if value.get("loss") == "dlr":
                need = 4 if targeted else 3
                out.append((need, f"attack {label!r} ({'targeted ' if targeted else ''}DLR loss)"))
            k = value.get("n_target_classes")
            if isinstance(k, int) and not isinstance(k, bool):
                out.append((max(k + 1, 4), f"attack {label!r} (n_target_classes={k}, targeted DLR)"))
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(params)
    return out
