"""Names the spec and the attack kernels share: norms, curve strategies, target modes,
precisions. One torch-free source, so parsing a spec imports no torch and
:mod:`sweep.attacks` checks against the same lists."""

from __future__ import annotations

from typing import Literal, get_args

Norm = Literal["linf", "l2", "l1", "l0"]
NORMS: tuple[Norm, ...] = get_args(Norm)

# incremental: ascending epsilons, each attacking the previous one's survivors;
# independent: every epsilon on every sample; nested: every (sample, epsilon) pair in
# one batch, a pair fooled at eps_k deciding the larger epsilons of its sample
# (sweep.attacks.base.Attack.curve)
Strategy = Literal["incremental", "independent", "nested"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)

TargetMode = Literal["random", "least-likely", "explicit"]
TARGET_MODES: tuple[TargetMode, ...] = get_args(TargetMode)

# fp32: attack calls on a GPU run without TF32 (sweep.attacks.base.full_precision);
# tf32: PyTorch's default TF32 convolutions, faster, verdicts near the boundary may flip;
# bf16: search passes under bf16 autocast, every verdict and early stop confirmed in fp32
Precision = Literal["fp32", "tf32", "bf16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

# which adversarial images a cell stores next to its rows (sweep.results.adversarials):
# none, those of the first ``n`` samples of the dataset, or all
AdversarialKeep = Literal["none", "first_n", "all"]
ADVERSARIAL_KEEPS: tuple[AdversarialKeep, ...] = get_args(AdversarialKeep)
