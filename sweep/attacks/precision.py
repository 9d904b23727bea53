"""Precision of attack calls: full fp32 on GPUs unless the spec asks for TF32.

:func:`full_precision` wraps every attack call and every verdict
(:func:`sweep.attacks.base.predict`); :func:`allow_tf32` is the spec's
``precision: tf32`` opt-out, a context variable the worker sets around a cell.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

_TF32_ALLOWED: ContextVar[bool] = ContextVar("sweep_tf32_allowed", default=False)


@contextlib.contextmanager
def allow_tf32() -> Iterator[None]:
    """Inside, :func:`full_precision` leaves PyTorch's TF32 settings alone: the spec's
    ``precision: tf32`` (faster on Ampere+ GPUs; verdicts near the boundary may flip)."""
    token = _TF32_ALLOWED.set(True)
    try:
        yield
    finally:
        _TF32_ALLOWED.reset(token)


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Run fp32 convolutions and matmuls as fp32 on a CUDA ``device``: no TF32.

    PyTorch lets cuDNN run fp32 convolutions in TF32 (a 10-bit mantissa) on Ampere
    and newer GPUs by default (``torch.backends.cudnn.conv.fp32_precision ==
    "tf32"``). Logits at ~1e-3 relative precision flip verdicts near the boundary,
    where minimal attacks stop: on an H200, 17 of 512 DeepFool-L2 "successes" on
    digits-cnn were not misclassified by the same model in fp32; with TF32 only
    for the search and fp32 verdicts, DeepFool then left 3.3% robust against 0.2%
    on the CPU, since its early stop had trusted TF32 (``bench/cuda_check.py``,
    docs/BENCHMARKS.md). So attack calls run entirely in fp32, search and verdicts
    alike, as on the CPU. The previous settings are restored after; on the CPU this
    does nothing, nor inside :func:`allow_tf32` (the spec's ``precision: tf32``).
    (Autocast, which a user turns on deliberately, is left alone.)
    """
    if device.type != "cuda" or _TF32_ALLOWED.get():
        yield
        return
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):  # torch >= 2.9
        saved = (cudnn_conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
        cudnn_conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            cudnn_conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved
        return
    legacy = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = legacy
