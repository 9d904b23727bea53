"""One-Pixel attack: differential evolution over a few pixels, batched over images.

Reference: Su, Vargas & Sakurai, "One pixel attack for fooling deep neural
networks", IEEE TEVC 2019, arXiv:1710.08864.

The budget ``eps`` is the number of pixels that may change (norm ``l0``, counted
over spatial positions: a pixel counts once whatever its channels do). A
candidate is ``k = floor(eps)`` tuples ``(row, col, v_1 .. v_C)``; painting it
sets those pixels to those values. The search is the paper's differential
evolution:

- population ``400`` per image, ``100`` generations (the paper's defaults);
- initial rows/cols uniform over the image, values ``N(0.5, 0.5)`` clipped to
  [0, 1] (the paper's ``N(128, 127)`` on a 0..255 scale);
- DE/rand/1 mutation ``x_r1 + F (x_r2 - x_r3)`` with ``F = 0.5`` and three distinct
  parents other than the child's own slot; no crossover (as the paper);
- a child replaces its parent when its fitness is no worse; genes that leave
  their bounds are redrawn uniformly inside them (what SciPy's
  ``differential_evolution``, used by the paper's code, does);
- fitness (minimised): the probability of the true class (untargeted) or minus
  the probability of the target (targeted);
- an image stops once any candidate fools the model (arg-max changes, or hits
  the target): its fooling candidate of best fitness is kept and it leaves the
  batch. The paper stops on probability thresholds instead; stopping on the
  arg-max is what success means here.

Batched: the populations of all still-active images are painted into one
``[b * population, C, H, W]`` tensor and scored in one forward pass per
generation (or in chunks of ``batch_rows`` rows, if set). Per-sample budgets
use a ``max k`` gene layout with a mask of the slots each image may use.

Coordinates are continuous in the genome and floored when painting, as in the
paper's SciPy-based code. Two slots landing on one pixel paint it once (the
later slot wins), so at most ``k`` pixels ever change and the candidate survives
the base class's L0 projection unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from sweep.attacks.active import ActiveSet
from sweep.attacks.base import FixedAttack
from sweep.attacks.norms import Norm
from sweep.attacks.params import Count, NonNegativeInt, Positive


def distinct_partners(rows: int, population: int, count: int, gen: torch.Generator,
                      device: torch.device) -> Tensor:
    """``[rows, population, count]`` indices, distinct per slot and different from the slot.

    The ``j``-th pick is uniform over ``population - 1 - j`` values, then shifted
    past the (sorted) indices already taken, which maps it uniformly onto the
    indices not taken.
    """
    taken = torch.arange(population, device=device).expand(rows, population).unsqueeze(-1)
    picks = []
    for j in range(count):
        u = torch.randint(0, population - 1 - j, (rows, population), generator=gen, device=device)
        for excluded in taken.sort(dim=-1).values.unbind(-1):
            u = u + (u >= excluded).to(u.dtype)
        picks.append(u)
        taken = torch.cat([taken, u.unsqueeze(-1)], dim=-1)
    return torch.stack(picks, dim=-1)


@dataclass(eq=False)
class _Search(ActiveSet):
    """The differential evolution's per-active-image state (:class:`ActiveSet` compacts it)."""

    x: Tensor
    labels: Tensor
    targets: Tensor | None
    # set once the budgets are known (after the zero-pixel samples left)
    slot_mask: Tensor | None = None  # [n, K]: the slots its budget allows
    pop: Tensor | None = None  # [n, P, K, 2 + C]
    fitness: Tensor | None = None  # [n, P]


def _pick(candidates: Tensor, which: Tensor) -> Tensor:
    """Candidate ``which[n]`` of each row of ``candidates`` ``[n, P, K, 2 + C]`` -> ``[n, K, 2 + C]``."""
    return candidates.gather(
        1, which.view(-1, 1, 1, 1).expand(-1, 1, *candidates.shape[2:])
    ).squeeze(1)


def paint(images: Tensor, genes: Tensor, slot_mask: Tensor) -> Tensor:
    """Set the pixels a candidate names: ``images`` ``[N, C, H, W]``, ``genes`` ``[N, K, 2 + C]``.

    Slot ``j`` of row ``n`` is used only where ``slot_mask[n, j]``. Where several
    used slots name one pixel the highest slot wins (a deterministic
    ``scatter_reduce(amax)``, so CUDA gives the same answer every time).
    """
    n, c, h, w = images.shape
    slots = genes.shape[1]
    rows = genes[..., 0].floor().to(torch.int64).clamp(0, h - 1)
    cols = genes[..., 1].floor().to(torch.int64).clamp(0, w - 1)
    where = rows * w + cols  # [N, K]
    slot_ids = torch.arange(slots, device=images.device).expand(n, slots)
    source = torch.where(slot_mask, slot_ids, torch.full_like(slot_ids, -1))
    winner = torch.full((n, h * w), -1, dtype=torch.int64, device=images.device)
    winner = winner.scatter_reduce(1, where, source, reduce="amax", include_self=True)
    values = genes[..., 2:].to(images.dtype)  # [N, K, C]
    picked = values.gather(1, winner.clamp_min(0).unsqueeze(-1).expand(n, h * w, c))
    picked = picked.transpose(1, 2).reshape(n, c, h, w)
    return torch.where((winner >= 0).view(n, 1, h, w), picked, images)


class OnePixel(FixedAttack):
    """One-Pixel attack (Su et al. 2019, arXiv:1710.08864): ``eps`` = pixels changed.

    Args:
        norm: ``l0`` (the only one): ``eps`` counts pixels, floored per sample.
        population: candidates per image; default 400 (paper).
        iterations: DE generations after the initial population; default 100 (paper).
        mutation: the DE scale factor ``F``; default 0.5 (paper).
        batch_rows: at most this many candidate images per forward pass; default
            ``None`` = the whole population of every active image in one pass.

    Shapes: images ``[B, C, H, W]`` in [0, 1]; ``eps`` per sample ``[B]``. A model
    query costs ``population`` rows per active image per generation.
    """

    name: ClassVar[str] = "onepixel"
    norms: ClassVar[tuple[Norm, ...]] = ("l0",)
    uses_gradients: ClassVar[bool] = False

    def __init__(
        self,
        norm: Norm | None = None,
        population: Annotated[int, Field(ge=4)] = 400,  # DE/rand/1 draws three others
        iterations: NonNegativeInt = 100,
        mutation: Positive = 0.5,
        batch_rows: Count | None = None,
    ) -> None:
        super().__init__(norm)
        self.population = population
        self.iterations = iterations
        self.mutation = mutation
        self.batch_rows = batch_rows

    # -- genome ---------------------------------------------------------------------
    @staticmethod
    def _bounds(shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Upper bounds per gene ``[2 + C]``: rows in [0, H), cols in [0, W), values in [0, 1]."""
        _, c, h, w = shape
        return torch.tensor([h, w] + [1.0] * c, dtype=like.dtype, device=like.device)

    def _initial(self, rows: int, slots: int, upper: Tensor, gen: torch.Generator) -> Tensor:
        shape = (rows, self.population, slots, upper.numel())
        uniform = torch.rand(shape, generator=gen, device=upper.device, dtype=upper.dtype) * upper
        normal = torch.randn(shape, generator=gen, device=upper.device, dtype=upper.dtype)
        values = (0.5 + 0.5 * normal).clamp(0.0, 1.0)  # N(128, 127) on a 0..255 scale
        return torch.cat([uniform[..., :2], values[..., 2:]], dim=-1)

    def _mutate(self, pop: Tensor, upper: Tensor, gen: torch.Generator) -> Tensor:
        rows, size = pop.shape[:2]
        parents = distinct_partners(rows, size, 3, gen, pop.device)  # [a, P, 3]
        flat = parents.view(rows, size * 3, 1, 1).expand(-1, -1, *pop.shape[2:])
        r1, r2, r3 = pop.gather(1, flat).view(rows, size, 3, *pop.shape[2:]).unbind(2)
        child = r1 + self.mutation * (r2 - r3)
        redraw = torch.rand(child.shape, generator=gen, device=pop.device, dtype=pop.dtype) * upper
        outside = (child < 0) | (child >= upper)
        outside[..., 2:] = (child[..., 2:] < 0) | (child[..., 2:] > 1)  # values may reach 1
        return torch.where(outside, redraw, child)

    # -- scoring --------------------------------------------------------------------
    def _evaluate(self, model: nn.Module, images: Tensor, pop: Tensor, slot_mask: Tensor,
                  labels: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(fitness, fooled)`` ``[a, P]`` for every candidate of every active image."""
        a, size = pop.shape[:2]
        base = images.repeat_interleave(size, dim=0)
        painted = paint(base, pop.flatten(0, 1), slot_mask.repeat_interleave(size, dim=0))
        step = painted.shape[0] if self.batch_rows is None else self.batch_rows
        logits = torch.cat([model(painted[i : i + step]) for i in range(0, painted.shape[0], step)])
        logits = logits.view(a, size, -1)
        probs = logits.softmax(dim=-1)
        if targets is None:
            fitness = probs.gather(2, labels.view(a, 1, 1).expand(a, size, 1)).squeeze(2)
            fooled = logits.argmax(-1) != labels.unsqueeze(1)
        else:
            fitness = -probs.gather(2, targets.view(a, 1, 1).expand(a, size, 1)).squeeze(2)
            fooled = logits.argmax(-1) == targets.unsqueeze(1)
        return fitness, fooled

    # -- the search -------------------------------------------------------------------
    @torch.no_grad()
    def _run(self, model: nn.Module, images: Tensor, labels: Tensor, eps: Tensor,
             targets: Tensor | None, generator: torch.Generator) -> Tensor:
        if images.dim() != 4:
            raise ValueError(f"onepixel: images must be [B, C, H, W], got {tuple(images.shape)}")
        _, _, h, w = images.shape
        pixels = eps.nan_to_num(posinf=h * w).floor().clamp(0, h * w).to(torch.int64)
        # budgets under one pixel change nothing: those samples are never active
        search = _Search(**_Search.outcome(images), x=images, labels=labels, targets=targets)
        if not search.keep(pixels > 0):
            return search.result
        slots = int(pixels[search.rows].max())
        search.slot_mask = (torch.arange(slots, device=images.device).unsqueeze(0)
                            < pixels[search.rows].unsqueeze(1))
        upper = self._bounds(images.shape, images)
        search.pop = self._initial(search.size, slots, upper, generator)
        search.fitness, fooled = self._evaluate(model, search.x, search.pop, search.slot_mask,
                                                search.labels, search.targets)
        scored, scored_fitness = search.pop, search.fitness  # what the last forward pass scored
        for generation in range(self.iterations + 1):
            # keep the fooling candidate of best fitness and stop querying those images
            done = fooled.any(dim=1)
            if bool(done.any()):
                score = torch.where(fooled, scored_fitness, torch.full_like(scored_fitness, float("inf")))
                genes = _pick(scored, score.argmin(dim=1))
                search.record(done, paint(search.x, genes, search.slot_mask))
                if not search.keep(~done):
                    break
            if generation == self.iterations:
                break
            children = self._mutate(search.pop, upper, generator)
            child_fit, fooled = self._evaluate(model, search.x, children, search.slot_mask,
                                               search.labels, search.targets)
            # a fooling child is recorded above even when its fitness loses its slot
            scored, scored_fitness = children, child_fit
            better = child_fit <= search.fitness
            search.pop = torch.where(better.view(*better.shape, 1, 1), children, search.pop)
            search.fitness = torch.where(better, child_fit, search.fitness)
        if search.size:
            # survivors: the best candidate found (selection is elitist per slot)
            best = _pick(search.pop, search.fitness.argmin(dim=1))
            search.result[search.rows] = paint(search.x, best, search.slot_mask)
        return search.result
