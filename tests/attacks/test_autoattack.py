"""The ``autoattack`` preset: the reference's components and budgets, as a cascade."""

from __future__ import annotations

import pytest
import torch

from sweep.attacks import create
from sweep.attacks.autoattack import preset_members
from sweep.models.checks import check_model
from tests.execution.toy_models import QuantizedInput


def budgets(version: str, norm: str) -> list[tuple]:
    keys = ("steps", "queries", "restarts", "n_target_classes", "eot_iter", "loss")
    return [(m["label"], *(m.get(k) for k in keys)) for m in preset_members(version, norm)]


def test_members_and_budgets_follow_the_reference_versions():
    # autoattack/autoattack.py, AutoAttack.set_version (fra31/auto-attack)
    assert budgets("standard", "linf") == budgets("standard", "l2") == [
        ("apgd-ce", 100, None, 1, None, None, "ce"),
        ("apgd-t", 100, None, 1, 9, None, None),
        ("fab-t", 100, None, 1, 9, None, None),
        ("square", None, 5000, 1, None, None, None),
    ]
    assert budgets("standard", "l1") == [
        ("apgd-ce", 100, None, 5, None, None, "ce"),
        ("apgd-t", 100, None, 1, 5, None, None),
        ("fab-t", 100, None, 1, 9, None, None),
    ]
    assert [m.get("large_eps") for m in preset_members("standard", "l1")] == [True, True, None]
    assert [m[0] for m in budgets("plus", "linf")] == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    assert [m[3] for m in budgets("plus", "linf")] == [5, 5, 5, 1, 1, 1]
    assert budgets("rand", "linf") == [
        ("apgd-ce", 100, None, 1, None, 20, "ce"),
        ("apgd-dlr", 100, None, 1, None, 20, "dlr"),
    ]
    assert create("autoattack").labels == ("apgd-ce", "apgd-t", "fab-t", "square")


def test_bad_version_and_scale():
    with pytest.raises(ValueError, match=r"version: did you mean 'standard'\? valid: plus, rand, standard"):
        create("autoattack", version="standrd")
    with pytest.raises(ValueError, match=r"scale: expected a number in \(0, 1\]"):
        create("autoattack", scale=2)


@pytest.mark.slow
def test_never_more_robust_than_torchattacks_autoattack(digits_model, digits_batch):
    torchattacks = pytest.importorskip("torchattacks")
    images, labels = digits_batch
    ours = create("autoattack", norm="linf")(digits_model, images, labels, 0.1, seed=0)
    peer = torchattacks.AutoAttack(digits_model, norm="Linf", eps=0.1, version="standard",
                                   n_classes=10, seed=0)
    with torch.no_grad():
        peer_robust = (digits_model(peer(images, labels)).argmax(1) == labels).float().mean()
    assert float(ours.robust.float().mean()) <= float(peer_robust)
    # and never weaker than APGD-CE alone, its first member
    apgd = create("apgd", norm="linf")(digits_model, images, labels, 0.1, seed=0)
    assert bool((ours.robust <= apgd.robust).all())


@pytest.mark.slow
def test_masked_gradients_are_broken_through_square_and_flagged(digits_batch):
    net = QuantizedInput().eval()
    images, labels = digits_batch[0][:8], digits_batch[1][:8]
    assert "zero_gradients" in {f.code for f in check_model(net, images, labels)}
    out = create("autoattack", norm="linf")(net, images, labels, 0.2, seed=0)
    square = create("autoattack").labels.index("square")
    assert float(out.robust.float().mean()) <= 0.125
    assert int((out.broken_by == square).sum()) >= 5  # the gradient members got no signal
