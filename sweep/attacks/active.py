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

Nested pairs (the ``nested`` curve strategy): a batch may hold several epsilons of one
sample, each row a (sample, epsilon) pair (:class:`Nesting`). A pair fooled at eps_k
decides every pair of the same sample at a larger epsilon, since the same adversarial
lies within their budget too: :meth:`ActiveSet.record` gives it to them and they
leave the batch with it. The base class verifies every pair on its own afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor

# The fields of ActiveSet itself: full-batch outcome, never compacted (rows apart).
_OUTCOME = ("result", "fooled", "best_norm", "nest")


@dataclass(frozen=True, eq=False)
class Nesting:
    """Rows of a batch as (sample, epsilon) pairs: ``group`` ``[N]`` the sample of each
    row (``0 .. groups - 1``), ``rank`` ``[N]`` the rank of its epsilon among that
    sample's epsilons, ascending, unique within a sample."""

    group: Tensor
    rank: Tensor
    groups: int

    def take(self, rows: Tensor) -> Nesting:
        """The pairs of ``rows`` (a sub-batch ``images[rows]``)."""
        return Nesting(self.group[rows], self.rank[rows], self.groups)

    def spread(self, hit: Tensor) -> tuple[Tensor, Tensor]:
        """``hit`` ``[N]`` rows found fooled -> ``(covered [N], source [N])``: covered rows
        are the hit ones and every row of the same sample at a larger epsilon; ``source``
        is, for a covered row, the hit row of its sample with the smallest epsilon, whose
        adversarial lies within the covered row's budget too."""
        n = hit.shape[0]
        big = torch.iinfo(torch.long).max
        first = torch.full((self.groups,), big, dtype=torch.long, device=hit.device)
        first.scatter_reduce_(0, self.group, torch.where(hit, self.rank, big), "amin")
        least = first[self.group]
        covered = self.rank >= least
        is_source = hit & (self.rank == least)  # one per sample: ranks are unique
        where = torch.zeros(self.groups, dtype=torch.long, device=hit.device)
        where[self.group[is_source]] = torch.arange(n, device=hit.device)[is_source]
        return covered, where[self.group]


_PAIRS: ContextVar[tuple[Tensor, Nesting] | None] = ContextVar("sweep_nested_pairs", default=None)


@contextlib.contextmanager
def nested_pairs(images: Tensor, nest: Nesting | None) -> Iterator[None]:
    """Inside, :meth:`ActiveSet.outcome` called on this very ``images`` tensor (the
    batch handed to a kernel's ``_run``) carries ``nest``; any other tensor, e.g. a
    sub-batch a kernel builds, gets it only from its parent set (``outcome(x, parent)``)."""
    token = _PAIRS.set(None if nest is None else (images, nest))
    try:
        yield
    finally:
        _PAIRS.reset(token)


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
        nest: the batch's (sample, epsilon) pairs, or ``None`` (:class:`Nesting`).

    A subclass adds the kernel's per-active-sample state as dataclass fields
    (``[n, ...]`` tensors, or ``None``); :meth:`keep` compacts them all with ``rows``.
    """

    result: Tensor
    fooled: Tensor
    best_norm: Tensor
    rows: Tensor
    nest: Nesting | None = dataclasses.field(default=None, kw_only=True)

    @classmethod
    def outcome(cls, images: Tensor, parent: ActiveSet | None = None) -> dict[str, object]:
        """The full-batch fields for a fresh search on ``images`` ``[N, ...]``: every
        sample active, nothing found (``cls(**cls.outcome(images), **state)``). A search
        on the active samples of another set (``images = x[parent.rows]``, e.g. one
        restart) names it as ``parent``, so nested pairs carry over."""
        n, dev = images.shape[0], images.device
        if parent is not None:
            nest = None if parent.nest is None else parent.nest.take(parent.rows)
        else:
            pairs = _PAIRS.get()
            nest = pairs[1] if pairs is not None and pairs[0] is images else None
        return {
            "result": images.clone(),
            "fooled": torch.zeros(n, dtype=torch.bool, device=dev),
            "best_norm": torch.full((n,), float("inf"), dtype=images.dtype, device=dev),
            "rows": torch.arange(n, device=dev),
            "nest": nest,
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
        if self.nest is not None:
            fooled = self.record(fooled, found)
        return self.keep(~fooled)

    def record(self, hit: Tensor, adv: Tensor) -> Tensor:
        """``adv[hit]`` ``[n, ...]`` fool: record them as those samples' adversarials.
        With nested pairs, the active pairs of the same samples at larger epsilons get
        the adversarial too; returns the rows recorded (``hit``, widened so)."""
        src = None
        if self.nest is not None:
            hit, src = self.nest.take(self.rows).spread(hit)
        rows = self.rows[hit]
        self.result[rows] = adv[hit] if src is None else adv[src[hit]]
        self.fooled[rows] = True
        return hit

    def record_and_drop(self, hit: Tensor, adv: Tensor) -> bool:
        """Early stop: record the fooling ``adv[hit]`` and drop those samples (and, with
        nested pairs, the larger epsilons of the same samples); ``False`` when none is
        left. Costs one host sync (``hit.any()``)."""
        if not bool(hit.any()):
            return True
        return self.keep(~self.record(hit, adv))

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
