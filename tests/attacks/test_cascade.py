"""Cascades: members in order, each on what the earlier ones left robust."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.attacks import create

DETERMINISTIC = [
    {"name": "fgsm", "label": "fgsm"},
    {"name": "pgd", "label": "pgd", "steps": 10, "random_start": False},
    {"name": "deepfool", "label": "deepfool", "steps": 20},
]


def alone(entry: dict, model, images, labels, eps, norm="linf", seed=3):
    params = {k: v for k, v in entry.items() if k not in ("name", "label")}
    return create(entry["name"], norm=norm, **params)(model, images, labels, eps, seed=seed)


def test_deterministic_members_give_the_per_sample_and(digits_model, digits_batch):
    images, labels = digits_batch
    eps = 0.1
    cascade = create("cascade", norm="linf", members=DETERMINISTIC)
    out = cascade(digits_model, images, labels, eps, seed=3)
    singles = [alone(m, digits_model, images, labels, eps) for m in DETERMINISTIC]
    expected = torch.stack([s.robust for s in singles]).all(dim=0)
    assert torch.equal(out.robust, expected)
    # never weaker than its strongest member
    assert int(out.robust.sum()) <= min(int(s.robust.sum()) for s in singles)
    # broken_by names the first member that breaks the sample alone
    broken_alone = torch.stack([~s.robust for s in singles])  # [members, B]
    clean_ok = out.clean_pred == labels
    first = torch.where(broken_alone.any(0), broken_alone.float().argmax(0), torch.tensor(-1))
    assert torch.equal(out.broken_by[clean_ok], first[clean_ok])
    assert bool((out.broken_by[~clean_ok] == -1).all())
    assert int((out.broken_by >= 0).sum()) > 0 and len(set(out.broken_by.tolist())) >= 3


class CountingModel(nn.Module):
    """Counts the rows it is asked to classify (forward passes x batch size)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.net(x)


def test_later_members_cost_only_the_survivors(digits_model, digits_batch):
    images, labels = digits_batch
    members = [{"name": "pgd", "label": "pgd", "steps": 10}, {"name": "square", "queries": 200}]
    counted = CountingModel(digits_model).eval()
    create("cascade", norm="linf", members=members)(counted, images, labels, 0.15, seed=1)
    cascade_rows = counted.rows
    counted.rows = 0
    for m in members:
        alone(m, counted, images, labels, 0.15, seed=1)
    assert cascade_rows < 0.6 * counted.rows  # Square runs only on what PGD left


def test_curve_records_the_member_per_epsilon(digits_model, digits_batch):
    images, labels = digits_batch[0][:16], digits_batch[1][:16]
    cascade = create("cascade", norm="linf", members=DETERMINISTIC)
    for strategy in ("incremental", "independent"):
        cur = cascade.curve(digits_model, images, labels, [0.0, 0.05, 0.2], strategy=strategy, seed=3)
        assert cur.broken_by is not None and cur.broken_by.shape == (3, 16)
        assert bool(((cur.broken_by >= 0) == ~cur.robust & (cur.clean_pred == labels)).all())
        assert bool((cur.broken_by[0] == -1).all())  # eps 0 breaks nothing


def test_bad_members_name_the_member():
    with pytest.raises(ValueError, match=r"members\[1\] \(fgsm\).*norm"):
        create("cascade", norm="l1", members=["pgd", "fgsm"])
    with pytest.raises(ValueError, match="appears twice"):
        create("cascade", members=["pgd", "pgd"])
    with pytest.raises(ValueError, match="itself a cascade"):
        create("cascade", members=["pgd", {"name": "cascade", "label": "inner"}])
    with pytest.raises(ValueError, match="non-empty list"):
        create("cascade", members=[])
