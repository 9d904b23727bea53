"""The field's model checks (AutoAttack's checks.py): each fires on the model it is for
and stays quiet on a plain trained CNN."""

from __future__ import annotations

import pytest
import torch

from sweep.attacks import create
from sweep.data.digits import load_digits_split
from sweep.models.checks import check_model, classes_needed
from sweep.models.digits_cnn import build_digits_cnn, load_digits_model
from tests.execution.toy_models import Noisy, QuantizedInput, Softmaxed


@pytest.fixture(scope="module")
def batch():
    data = load_digits_split("test").take(32)
    return data.images, data.labels


def codes(net, batch, **kwargs) -> set[str]:
    return {f.code for f in check_model(net, *batch, **kwargs)}


def test_a_plain_trained_cnn_passes(batch):
    assert codes(load_digits_model("digits-cnn"), batch) == set()


@pytest.mark.parametrize(
    ("model", "code"),
    [(Noisy, "randomized"), (Softmaxed, "probability_outputs"), (QuantizedInput, "zero_gradients")],
)
def test_each_check_fires_on_its_model(model, code, batch):
    assert code in codes(model(), batch)


def test_zero_gradient_message_counts_samples(batch):
    net = QuantizedInput().eval()
    with torch.no_grad():
        correct = int((net(batch[0]).argmax(1) == batch[1]).sum())
    (finding,) = [f for f in check_model(net, *batch) if f.code == "zero_gradients"]
    # round() has a zero gradient everywhere: every correctly classified sample
    assert f"zero for {correct} and not finite for 0 of {correct} correctly" in finding.message


def test_class_count_needs_of_dlr_targets_and_cascade_members():
    five = build_digits_cnn(num_classes=5).eval()
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(4, dtype=torch.long)
    needs = classes_needed("aa", [{"version": "standard"},
                                  [{"name": "apgd", "loss": "dlr"}, {"name": "x", "n_target_classes": 9}]])
    assert needs == [(3, "attack 'aa' (DLR loss)"), (10, "attack 'aa' (n_target_classes=9, targeted DLR)")]
    found = check_model(five, images, labels, classes_needed=needs)
    assert [f.message for f in found if f.code == "too_few_classes"] == [
        "attack 'aa' (n_target_classes=9, targeted DLR) needs at least 10 classes; the model has 5"
    ]


def test_quantized_model_masks_gradients_and_square_sees_through(batch):
    """What the checks warn about is real: gradient attacks stall, a black-box one does not."""
    net = QuantizedInput().eval()
    x, y = batch
    cascade = create("cascade", norm="linf", members=[
        {"name": "apgd", "label": "apgd-ce", "steps": 20}, {"name": "square", "queries": 300},
    ])
    out = cascade(net, x, y, 0.2, seed=0)
    by = out.broken_by.tolist()
    assert by.count(1) > 3 * max(by.count(0), 1)  # Square breaks what APGD could not
    assert float(out.robust.float().mean()) < 0.1
