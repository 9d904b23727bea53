"""``curve(..., keep_adv=True)`` returns the adversarial each verdict was measured on
(issue 14: what a sweep stores), for every curve strategy, and changes no verdict."""

from __future__ import annotations

import pytest
import torch

from sweep.attacks import create
from sweep.attacks.base import predict
from sweep.attacks.norms import lp_norm, within

CASES = [
    ("fgsm", {}, "linf", [0.0, 0.05, 0.1, 0.3], "incremental"),
    ("pgd", {"steps": 5}, "linf", [0.0, 0.05, 0.1, 0.3], "incremental"),
    ("pgd", {"steps": 5}, "linf", [0.0, 0.05, 0.1, 0.3], "independent"),
    ("pgd", {"steps": 5}, "linf", [0.3, 0.0, 0.1, 0.05], "nested"),
    ("apgd", {"steps": 5, "loss": "dlr"}, "linf", [0.0, 0.05, 0.1, 0.3], "nested"),
    ("pgd", {"steps": 5}, "l2", [0.0, 0.5, 2.0], "incremental"),
    ("deepfool", {}, "l2", [0.0, 0.5, 1.0, 2.0], "incremental"),
    ("deepfool", {}, "l2", [0.0, 0.5, 1.0, 2.0], "independent"),
    ("deepfool", {}, "l2", [0.0, 0.5, 1.0, 2.0], "nested"),
]


@pytest.mark.parametrize(("name", "params", "norm", "eps", "strategy"), CASES)
def test_kept_adversarials_reproduce_the_verdicts(digits_model, digits_batch, name, params, norm, eps, strategy):
    images, labels = digits_batch
    atk = create(name, norm=norm, **params)
    kept = atk.curve(digits_model, images, labels, eps, strategy=strategy, keep_adv=True, seed=3)
    plain = atk.curve(digits_model, images, labels, eps, strategy=strategy, seed=3)
    assert plain.adv is None and kept.adv is not None
    assert kept.adv.shape == (len(eps), *images.shape)
    assert torch.equal(kept.pred, plain.pred) and torch.equal(kept.success, plain.success)
    for k, e in enumerate(eps):
        assert torch.equal(predict(digits_model, kept.adv[k]), kept.pred[k])
        norms = lp_norm(kept.adv[k] - images, norm)
        assert torch.allclose(norms, kept.norm[k])
        assert bool(within(norms, torch.full_like(norms, e)).all())
        assert float(kept.adv[k].min()) >= 0 and float(kept.adv[k].max()) <= 1
