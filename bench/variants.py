"""Speed variants of a model for the GPU runs: channels_last memory and bf16 autocast.

A variant is only worth reporting if it leaves the *answer* alone, so
:func:`agreement` re-runs one attack on the plain fp32 model and on the variant
(same seed, same batch) and counts the samples whose verdict differs; and the
variant's adversarials are re-checked on the fp32 model (a bf16 model may be
fooled by an image the fp32 model still classifies right).

- ``channels_last``: NHWC memory for convolutions (Tensor Cores prefer it). The
  arithmetic is the same up to the order of float additions.
- ``bf16``: the forward pass under ``torch.autocast(dtype=bfloat16)``; inputs,
  gradients and the adversarial images stay float32, logits come back float32.
  bf16 keeps 8 bits of mantissa: predictions near a decision boundary can flip.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

VARIANTS = ("fp32", "channels_last", "bf16")


class Autocast(nn.Module):
    """Run ``net`` under bf16 autocast on ``device_type``; return float32 logits."""

    def __init__(self, net: nn.Module, device_type: str) -> None:
        super().__init__()
        self.net = net
        self.device_type = device_type

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.net(x).float()


def apply_variant(model: nn.Module, images: Tensor, variant: str) -> tuple[nn.Module, Tensor]:
    """``(model, images)`` converted for ``variant`` (``fp32`` returns them unchanged).

    The model is deep-copied for a variant, so the fp32 original stays as it was.
    """
    import copy

    if variant == "fp32":
        return model, images
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    net = copy.deepcopy(model)
    if variant == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        return net.eval(), images.contiguous(memory_format=torch.channels_last)
    return Autocast(net, images.device.type).eval(), images


def agreement(
    fp32: nn.Module,
    variant: nn.Module,
    images: Tensor,
    labels: Tensor,
    variant_images: Tensor,
    eps: float,
    steps: int = 10,
) -> dict[str, int]:
    """How far a variant's PGD answer is from fp32's, per sample (see module doc)."""
    from sweep.attacks import create
    from sweep.attacks.base import predict

    atk = create("pgd", steps=steps, early_stop=False)
    ref = atk(fp32, images, labels, eps, seed=0)
    var = atk(variant, variant_images, labels, eps, seed=0)
    fooled_on_fp32 = predict(fp32, var.adv.contiguous()) != labels
    return {
        "samples": int(labels.numel()),
        "verdict differs": int((ref.success != var.success).sum()),
        "clean pred differs": int((ref.clean_pred != var.clean_pred).sum()),
        "variant adv fools fp32 differently": int((fooled_on_fp32 != var.success).sum()),
    }
