"""Batch compaction: the samples a kernel still attacks, and what it found so far.

A kernel stops spending forward and backward passes on a sample once its verdict
cannot change (fooled, for fixed-epsilon attacks; fooled within a finite budget, for
minimal ones): the sample's adversarial is recorded and the sample leaves the
batch. Samples do not interact (the model is in eval mode), so the survivors follow
the same trajectories as in the full batch.

:class:`ActiveSet` is that state, one object for every kernel: ``rows`` maps each
active sample to its row of the full batch, ``result`` / ``fooled`` / ``best_norm``
hold the full batch's outcome, and a kernel's own per-sample state (iterate,
gradient, step size, ...) lives in the fields of a dataclass subclass, compacted
together with ``rows`` by :meth:`ActiveSet.keep`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

# The fields of ActiveSet itself: full-batch outcome, never compacted (rows apart).
_OUTCOME = ("result", "fooled", "best_norm")


@dataclass(eq=False)
class ActiveSet:
    """The samples still attacked in a batch of ``N``, and the best adversarial so far.

    Attributes:
        result: ``[N, ...]`` the adversarial recorded per sample (the clean image, or
            the kernel's last candidate, until one is).
        fooled: ``[N]`` bool, a fooling adversarial was recorded.
        best_norm: ``[N]`` the norm of the recorded adversarial (``inf``: none), for
            kernels that keep the smallest one (:meth:`improve`).
        rows: ``[n]`` the row of ``result`` of each active sample.

    A subclass adds the kernel's per-active-sample state as dataclass fields
    (``[n, ...]`` tensors, or ``None``); :meth:`keep` compacts them all with ``rows``.
    """

    result: Tensor
    fooled: Tensor
    best_norm: Tensor
    rows: Tensor

    @classmethod
    def outcome(cls, images: Tensor) -> dict[str, Tensor]:
        """The full-batch fields for a fresh search on ``images`` ``[N, ...]``: every
        sample active, nothing found (``cls(**cls.outcome(images), **state)``)."""
        n, dev = images.shape[0], images.device
        return {
            "result": images.clone(),
            "fooled": torch.zeros(n, dtype=torch.bool, device=dev),
            "best_norm": torch.full((n,), float("inf"), dtype=images.dtype, device=dev),
            "rows": torch.arange(n, device=dev),
        }

    @property
    def size(self) -> int:
        """How many samples are still active."""
        return self.rows.numel()

    def keep(self, mask: Tensor) -> bool:
        """Keep the active samples where ``mask`` ``[n]`` holds, compacting ``rows`` and
        every per-sample field; ``False`` when none is left."""
        index = mask.nonzero().squeeze(1)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name not in _OUTCOME and isinstance(value, Tensor):
                setattr(self, field.name, value.index_select(0, index))
        return index.numel() > 0

    def take_round(self, found: Tensor, fooled: Tensor) -> bool:
        """A round (a restart, a target) ran on the active samples: each takes its
        candidate ``found`` ``[n, ...]`` as its result, and those it fooled (``fooled``
        ``[n]``) leave, so later rounds attack only the others; ``False`` when none is left."""
        self.result[self.rows] = found
        self.fooled[self.rows] = fooled
        return self.keep(~fooled)

    def record(self, hit: Tensor, adv: Tensor) -> None:
        """``adv[hit]`` ``[n, ...]`` fool: record them as those samples' adversarials."""
        rows = self.rows[hit]
        self.result[rows] = adv[hit]
        self.fooled[rows] = True

    def record_and_drop(self, hit: Tensor, adv: Tensor) -> bool:
        """Early stop: record the fooling ``adv[hit]`` and drop those samples; ``False``
        when none is left. Costs one host sync (``hit.any()``)."""
        if not bool(hit.any()):
            return True
        self.record(hit, adv)
        return self.keep(~hit)

    def improve(self, hit: Tensor, adv: Tensor, norm: Tensor) -> None:
        """Minimal attacks: where ``adv`` fools (``hit``) with a smaller ``norm`` ``[n]``
        than the recorded one, record it."""
        better = hit & (norm < self.best_norm[self.rows])
        rows = self.rows[better]
        self.best_norm[rows] = norm[better]
        self.result[rows] = adv[better]
        self.fooled[rows] = True

    def settled(self, budget: Tensor) -> Tensor:
        """``[n]`` active samples whose recorded adversarial lies within a finite
        ``budget`` ``[N]`` (same scale as ``best_norm``): their verdict cannot change."""
        b = budget[self.rows]
        return torch.isfinite(b) & (self.best_norm[self.rows] <= b)
