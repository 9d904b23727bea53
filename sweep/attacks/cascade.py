"""A cascade: attacks run in order, each on the samples the earlier ones left robust.

This is how AutoAttack (Croce & Hein 2020, arXiv:2003.01690) composes its ensemble:
APGD-CE, then APGD-T on what APGD-CE left, then FAB-T, then Square; a sample counts
as robust only if every member failed on it, and the cost is the first member plus
the survivors rather than the sum of the members. The per-sample worst case of
running every member alone is the same rule at the full price.

- Per call (one epsilon per sample), member ``k`` attacks the samples that members
  ``0 .. k-1`` left correctly classified; the first adversarial that misclassifies
  within the budget is kept, and ``broken_by`` records which member found it.
- "Broke" means *misclassified* within the budget (the robustness verdict), also
  for members that search with a target (APGD-T, FAB-T): a cascade evaluates
  untargeted robustness, so it takes no ``targets`` itself.
- Every member runs with the cascade's seed, as AutoAttack seeds each of its
  components with the same seed. A member's random draws follow the batch it is
  given (the survivors), so a randomised member (random starts, Square) can land
  on other draws than when run alone on every sample; deterministic members give
  exactly the per-sample AND of running each alone (tests/attacks/test_cascade.py).
- Curves: the base class's strategies apply unchanged (``incremental`` attacks the
  survivors of the smaller epsilon with the whole cascade).

Members are given as registry names or mappings ``{name, label?, **params}``; the
cascade's norm is every member's norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from sweep.attacks.base import Attack, FixedAttack
from sweep.attacks.members import DEFAULT_MEMBERS, MemberEntry, build
from sweep.attacks.members import member_label as member_label  # where it was
from sweep.attacks.norms import Norm


class Cascade(FixedAttack):
    """Members run in order, each on the samples the earlier ones left robust.

    Args:
        norm: the norm of every member.
        members: registry names or ``{name, label?, **params}`` mappings, in order.
            Labels must be unique. Default: APGD-CE, then APGD-DLR (:data:`DEFAULT_MEMBERS`).

    Shapes: images ``[B, C, H, W]`` in [0, 1]; labels, eps ``[B]``. Results carry
    ``broken_by`` ``[B]`` (member index, ``-1`` for none).
    """

    name: ClassVar[str] = "cascade"
    # l0 has one attack (One-Pixel): nothing to cascade
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2", "l1")
    supports_targeted: ClassVar[bool] = False
    has_members: ClassVar[bool] = True
    # where the members come from: "" the `members` argument; else a preset's name
    # (sweep.attacks.members.entries_of), so the spec's validation finds them torch-free
    preset: ClassVar[str] = ""

    def __init__(self, norm: Norm | None = None, members: Sequence[MemberEntry] | None = None) -> None:
        super().__init__(norm)
        chosen = DEFAULT_MEMBERS if members is None else members
        self.member_entries: tuple[MemberEntry, ...] = tuple(chosen)
        self.members: tuple[tuple[str, Attack], ...] = build_members(self.norm, chosen)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.members)

    def _run(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        eps: Tensor,
        targets: Tensor | None,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        seed = generator.initial_seed()  # the call's seed, handed to every member
        adv = images.clone()
        broken_by = torch.full((images.shape[0],), -1, dtype=torch.long, device=images.device)
        alive = torch.arange(images.shape[0], device=images.device)
        for k, (_, member) in enumerate(self.members):
            if not alive.numel():
                break
            out = member(model, images[alive], labels[alive], eps[alive], seed=seed)
            # the base class passed only correctly classified samples: not robust = broken
            broke = ~out.robust
            adv[alive[broke]] = out.adv[broke]
            broken_by[alive[broke]] = k
            alive = alive[~broke]
        return adv, broken_by


def build_members(norm: Norm, entries: Sequence[MemberEntry]) -> tuple[tuple[str, Attack], ...]:
    """``(label, attack)`` per member entry, each built with ``norm`` (the rules:
    :func:`sweep.attacks.members.build`)."""
    from sweep.attacks.registry import create

    return build(norm, entries, lambda name, norm, params: create(name, norm=norm, **params))
