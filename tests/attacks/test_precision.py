"""Verdicts in full fp32: the TF32 switch around every prediction, checked without a GPU.

PyTorch's precision flags are process-wide settings that can be read and set on
any machine, so the switch itself is tested here; bench/cuda_check.py measures on
a real GPU what it changes (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.attacks import base, precision
from sweep.attacks.base import predict
from sweep.attacks.precision import full_precision


def flags() -> tuple[str, str]:
    return torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision


def test_tf32_is_off_inside_and_restored_after_even_on_error():
    before = flags()
    assert before[0] == "tf32"  # PyTorch's default for cuDNN convolutions: the reason for the switch
    with full_precision(torch.device("cuda")):
        assert flags() == ("ieee", "ieee")
    assert flags() == before
    try:
        with full_precision(torch.device("cuda", 0)):
            raise RuntimeError("a model that raises")
    except RuntimeError:
        pass
    assert flags() == before


def test_cpu_predictions_leave_the_flags_alone():
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(flags())
            return torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], dim=1)

    before = flags()
    assert predict(Spy(), torch.ones(3, 1, 2, 2)).tolist() == [0, 0, 0]
    assert seen == [before]


def test_every_verdict_goes_through_predict(monkeypatch, digits_model, digits_batch):
    """The clean prediction and the re-run on the adversarial batch both use predict()."""
    from sweep.attacks import create

    calls = []
    real = base.predict

    def counting(model, images):
        calls.append(images.shape[0])
        return real(model, images)

    monkeypatch.setattr(base, "predict", counting)
    x, y = digits_batch
    result = create("fgsm")(digits_model, x, y, 0.1)
    assert calls == [len(y), len(y)]  # clean, then the verification re-run
    assert result.success.shape == (len(y),)


def test_the_whole_call_runs_in_full_precision(digits_batch):
    """The search as well as the verdicts: the model sees TF32 off in every forward of a
    call on a CUDA tensor. Simulated on the CPU by a model that reports the flags and a
    full_precision keyed to a CUDA device."""
    from sweep.attacks import create

    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, x):
            seen.append(flags())
            return self.lin(x.flatten(1))

    x, y = digits_batch
    torch.manual_seed(0)  # the spy's random weights: a fixed number of forwards
    cuda_like = torch.device("cuda")
    original = base.full_precision
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base, "full_precision", lambda device: original(cuda_like))
        create("pgd", steps=3).curve(Spy(), x, y, [0.05, 0.1])
        create("deepfool", steps=3)(Spy(), x, y, 1.0)
    assert len(seen) >= 4 and set(seen) == {("ieee", "ieee")}, seen  # clean + verify, twice at least
    assert flags()[0] == "tf32"


def test_allow_tf32_leaves_pytorchs_settings_alone(digits_batch):
    """The spec's precision: tf32: inside allow_tf32 a call on a GPU keeps TF32 on."""
    from sweep.attacks import create

    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(flags())
            return torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], dim=1)

    x, y = digits_batch
    original = base.full_precision
    with pytest.MonkeyPatch.context() as mp, precision.allow_tf32():
        mp.setattr(base, "full_precision", lambda device: original(torch.device("cuda")))
        create("fgsm")(Spy(), x, y, 0.1)
    assert seen and set(seen) == {("tf32", "none")}
    with full_precision(torch.device("cuda")):  # and outside it, fp32 again
        assert flags() == ("ieee", "ieee")
