"""Model factories for the sweep tests, named in specs as ``tests.execution.toy_models:...``."""

from __future__ import annotations

import torch
from torch import nn

from sweep.models.digits_cnn import build_digits_cnn


class FailsOnBatches(nn.Module):
    """Fine on one sample (so it passes the validation probe), raises on a real batch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = build_digits_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            raise RuntimeError(f"toy model refuses batches of {x.shape[0]}")
        return self.net(x)


class NanOnBatches(FailsOnBatches):
    """Finite on one sample, NaN logits on a batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out if x.shape[0] == 1 else out * float("nan")


class AlwaysRaises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("wrong input shape for this toy model")


def fails_on_batches() -> nn.Module:
    return FailsOnBatches()


def nan_on_batches() -> nn.Module:
    return NanOnBatches()


def always_raises() -> nn.Module:
    return AlwaysRaises()


def five_classes() -> nn.Module:
    return build_digits_cnn(num_classes=5)


class QuantizedInput(nn.Module):
    """The trained digits CNN behind input quantization to ``levels`` grey levels: the
    rounding has a zero gradient everywhere, the textbook gradient masking (Athalye et al.
    2018, arXiv:1802.00420, sec. 4.1) that gradient attacks cannot see through."""

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        from sweep.models.digits_cnn import load_digits_model

        self.net, self.levels = load_digits_model("digits-cnn"), levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * self.levels) / self.levels)


class Noisy(nn.Module):
    """The trained digits CNN with Gaussian noise on its input: a randomised model."""

    def __init__(self) -> None:
        super().__init__()
        from sweep.models.digits_cnn import load_digits_model

        self.net = load_digits_model("digits-cnn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 0.05 * torch.randn_like(x))


class Softmaxed(nn.Module):
    """The trained digits CNN returning probabilities instead of logits."""

    def __init__(self) -> None:
        super().__init__()
        from sweep.models.digits_cnn import load_digits_model

        self.net = load_digits_model("digits-cnn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(dim=1)


def quantized_input() -> nn.Module:
    return QuantizedInput()


def noisy() -> nn.Module:
    return Noisy()


def softmaxed() -> nn.Module:
    return Softmaxed()


class NanOffTheGrid(nn.Module):
    """The trained digits CNN, but NaN logits for any image that is not on the digits
    grid (pixels k/16): finite on every clean sample, NaN on nearly every perturbed
    one. A numerical trap that an attack must not report as a success (issue 15)."""

    def __init__(self) -> None:
        super().__init__()
        from sweep.models.digits_cnn import load_digits_model

        self.net = load_digits_model("digits-cnn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        scaled = x * 16
        on_grid = ((scaled - scaled.round()).abs() < 1e-4).flatten(1).all(dim=1)
        return out.masked_fill(~on_grid[:, None], float("nan"))


def nan_off_the_grid() -> nn.Module:
    return NanOffTheGrid()
