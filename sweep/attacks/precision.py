"""Precision of attack calls: verdicts in full fp32; the search as the spec's ``precision`` says.

- ``fp32`` (default): on a GPU every attack call, search and verdicts, runs without
  TF32 (:func:`full_precision`); on the CPU nothing changes.
- ``tf32``: PyTorch's TF32 defaults are left alone, search and verdicts alike.
- ``bf16``: the search passes of kernels that support it (``Attack.bf16_search``) run
  under ``torch.autocast(bfloat16)`` (TF32 allowed on a GPU: :func:`search_precision`),
  while every verdict stays fp32 with autocast off (:func:`full_precision`): the final
  verification, and each early-stop decision, which a kernel confirms with an fp32
  forward before a sample leaves its batch (``sweep.attacks.base.confirm_fooled``).

:func:`use_precision` is how the worker sets the spec's choice around a cell (a
context variable, so concurrent calls in other contexts are unaffected).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

from sweep.validation.names import PRECISIONS, Precision

_PRECISION: ContextVar[Precision] = ContextVar("sweep_precision", default="fp32")
# True inside a search that search_precision put under bf16 autocast
_LOW_SEARCH: ContextVar[bool] = ContextVar("sweep_low_precision_search", default=False)


@contextlib.contextmanager
def use_precision(precision: Precision) -> Iterator[None]:
    """Run the attack calls inside with ``precision`` (one of :data:`PRECISIONS`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    token = _PRECISION.set(precision)
    try:
        yield
    finally:
        _PRECISION.reset(token)


def allow_tf32() -> contextlib.AbstractContextManager[None]:
    """Inside, :func:`full_precision` leaves PyTorch's TF32 settings alone: the spec's
    ``precision: tf32`` (faster on Ampere+ GPUs; verdicts near the boundary may flip)."""
    return use_precision("tf32")


def low_precision_search() -> bool:
    """Whether the kernel search running now is under bf16 autocast
    (:func:`search_precision`), so that its early-stop decisions need an fp32
    confirmation; ``False`` in kernels that search in fp32 whatever the spec says."""
    return _LOW_SEARCH.get()


@contextlib.contextmanager
def _cuda_fp32_as(mode: str) -> Iterator[None]:
    """cuDNN convolutions and CUDA matmuls on fp32 tensors as ``mode`` (``ieee``: true
    fp32; ``tf32``), the previous settings restored after."""
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):  # torch >= 2.9
        saved = (cudnn_conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
        cudnn_conv.fp32_precision = mode
        torch.backends.cuda.matmul.fp32_precision = mode
        try:
            yield
        finally:
            cudnn_conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved
        return
    legacy = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = legacy


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
    does nothing, nor under ``precision: tf32`` (:func:`allow_tf32`).

    Under ``precision: bf16`` autocast is also switched off inside (the search turns
    it on again for itself, :func:`search_precision`), so verdicts never see bf16.
    Otherwise autocast, which a user turns on deliberately, is left alone.
    """
    precision = _PRECISION.get()
    if precision == "tf32":
        yield
        return
    with contextlib.ExitStack() as stack:
        if precision == "bf16":
            stack.enter_context(torch.autocast(device.type, enabled=False))
        if device.type == "cuda":
            stack.enter_context(_cuda_fp32_as("ieee"))
        yield


@contextlib.contextmanager
def search_precision(device: torch.device) -> Iterator[None]:
    """The search passes of a kernel that supports a low-precision search: under
    ``precision: bf16``, ``torch.autocast(device.type, bfloat16)`` and, on a GPU, TF32
    for what stays fp32; otherwise nothing changes (:func:`full_precision` holds)."""
    if _PRECISION.get() != "bf16":
        yield
        return
    token = _LOW_SEARCH.set(True)
    try:
        with contextlib.ExitStack() as stack:
            if device.type == "cuda":
                stack.enter_context(_cuda_fp32_as("tf32"))
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
            yield
    finally:
        _LOW_SEARCH.reset(token)
