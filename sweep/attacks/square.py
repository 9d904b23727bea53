"""Square Attack: score-based black-box random search inside an L-inf or L2 ball.

Reference: Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV 2020,
arXiv:1912.00049 (reference code: github.com/max-andr/square-attack and the
``square.py`` of github.com/fra31/auto-attack).

Only the model's logits are used (no gradients), under ``torch.no_grad``. Each
iteration proposes, per sample, one random square window of side ``s`` and
keeps the proposal when the loss improves (or the sample is fooled):

- loss: margin ``z_y - max_{j != y} z_j`` (untargeted, default) or ``-CE``
  (``loss="ce"``); targeted attacks minimise the cross-entropy to the target,
  as the reference does;
- ``s = round(sqrt(p * H * W))`` with ``p`` halved along the reference
  piecewise-constant schedule (``p_init = 0.8`` by default; the schedule is
  written for 10,000 queries and rescaled to ``queries``, as the reference's
  ``resc_schedule=True`` does; AutoAttack calls Square with ``resc_schedule=False``,
  i.e. the 10,000-query schedule cut off at 5,000 queries, which keeps larger
  windows longer: ours is the stronger setting on the models measured);
- L-inf: initialisation with vertical stripes of ``+-eps`` (one random sign per
  column and channel); a proposal sets the window to ``x +- eps`` (one sign per
  channel). As in the original code, a proposal that would not change the
  window is flipped to the opposite sign instead of wasting a query.
- L2: the reference initialisation (a grid of ``H // 5``-sized blocks, each
  holding the reference "eta" pattern with a random sign per channel, scaled to
  norm eps) and the reference proposal that moves the mass of a second window
  into the first one, keeping ``||delta||_2 = eps``.

Departures from the reference, all vectorised per sample and none weaker:
square positions and sizes are drawn per sample (the reference draws one
position for the whole batch), positions are uniform over *all* valid positions
(the reference's ``randint(0, H - s)`` never reaches the last row/column), and
``eps`` is per sample. ``queries`` counts the initial query, so a sample costs at
most ``queries`` forward rows per restart (the torchattacks port makes
``queries + 1``). Fooled samples leave the batch at once (compaction): they cost
no further queries and their adversarial is kept.

Defaults: ``queries=5000`` (the value AutoAttack runs), ``restarts=1``,
``p_init=0.8``, ``loss="margin"``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sweep.attacks.active import ActiveSet, Nesting
from sweep.attacks.base import FixedAttack, confirm_fooled
from sweep.attacks.losses import margin
from sweep.attacks.norms import Norm, batch_view
from sweep.attacks.params import Count, Fraction

# The reference schedule of p (fraction of pixels in the window), written for 10,000
# queries: p = p_init / 2**i on the i-th interval of (0, 10], (10, 50], ..., (8000, inf).
_P_BOUNDARIES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_REFERENCE_QUERIES = 10_000


def p_schedule(iteration: Tensor, queries: int, p_init: float) -> Tensor:
    """Per-sample fraction ``p`` ``[b]`` at 0-based ``iteration`` ``[b]`` (reference schedule)."""
    scaled = torch.div(iteration * _REFERENCE_QUERIES, queries, rounding_mode="floor")
    bounds = torch.tensor(_P_BOUNDARIES, device=iteration.device, dtype=scaled.dtype)
    halvings = torch.bucketize(scaled, bounds, right=False)  # i: bounds[i-1] < it <= bounds[i]
    return p_init / torch.pow(2.0, halvings.to(torch.float64))


def eta_rectangles(rows: int, cols: int) -> Tensor:
    """The reference's nested-rectangles pattern ``[rows, cols]``, unit L2 norm.

    Rectangle ``k`` (centred on ``(rows // 2, cols // 2)``, side ``2k + 1``) adds
    ``1 / (k + 1)**2``; in closed form a cell at Chebyshev distance ``d`` from the
    centre holds ``sum_{k=d}^{K-1} 1 / (k + 1)**2`` with ``K = max(rows, cols) // 2 + 1``.
    """
    out = torch.zeros(rows, cols, dtype=torch.float64)
    if rows == 0 or cols == 0:
        return out
    rc, cc = rows // 2, cols // 2
    top = max(rc, cc) + 1
    weights = 1.0 / torch.arange(1, top + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum_{k >= d} weights[k]
    dist = torch.maximum(
        (torch.arange(rows) - rc).abs().unsqueeze(1), (torch.arange(cols) - cc).abs().unsqueeze(0)
    )
    out = tail[dist]
    return out / out.norm()


def eta(side: int) -> Tensor:
    """The reference L2 window pattern ``[side, side]``: +rectangles on top, - below, unit norm."""
    out = torch.zeros(side, side, dtype=torch.float64)
    out[: side // 2] = eta_rectangles(side // 2, side)
    out[side // 2 :] = -eta_rectangles(side - side // 2, side)
    return out / out.norm()


def _window_mask(top: Tensor, left: Tensor, side: Tensor, height: int, width: int) -> Tensor:
    """``[b, 1, H, W]`` bool: the square ``[top, top + side) x [left, left + side)`` per sample."""
    rows = torch.arange(height, device=top.device).view(1, height, 1)
    cols = torch.arange(width, device=top.device).view(1, 1, width)
    t, lft, s = top.view(-1, 1, 1), left.view(-1, 1, 1), side.view(-1, 1, 1)
    inside = (rows >= t) & (rows < t + s) & (cols >= lft) & (cols < lft + s)
    return inside.unsqueeze(1)


class Square(FixedAttack):
    """Square Attack (Andriushchenko et al. 2020, arXiv:1912.00049), L-inf and L2.

    Args:
        norm: ``linf`` (default) or ``l2``.
        queries: model queries per sample and restart, the initial one included;
            default 5000 (AutoAttack's budget).
        restarts: independent runs; later runs attack only the survivors; default 1.
        p_init: initial fraction of pixels in the square window; default 0.8.
        loss: untargeted loss, ``margin`` (default, the reference) or ``ce``;
            targeted attacks always use the cross-entropy to the target (reference).

    Shapes: images ``[B, C, H, W]`` in [0, 1]; ``eps`` per sample ``[B]``.
    """

    name: ClassVar[str] = "square"
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2")
    uses_gradients: ClassVar[bool] = False
    # Off: it accepts a proposal by comparing losses, which bf16 logits quantise
    # (measured on digits: up to 1.2 points more robust; the same cause made APGD
    # weaker, docs/BENCHMARKS.md issue 13). Its fooled decisions are fp32-confirmed,
    # but it searches in fp32.
    bf16_search: ClassVar[bool] = False

    def __init__(
        self,
        norm: Norm | None = None,
        queries: Count = 5000,
        restarts: Count = 1,
        p_init: Fraction = 0.8,
        loss: Literal["margin", "ce"] = "margin",
    ) -> None:
        super().__init__(norm)
        self.queries = queries
        self.restarts = restarts
        self.p_init = p_init
        self.loss = loss

    # -- scoring ------------------------------------------------------------------
    def _score(self, logits: Tensor, labels: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(loss, fooled)`` per row: lower loss is better; fooled is what argmax says."""
        if targets is not None:
            return F.cross_entropy(logits, targets, reduction="none"), logits.argmax(1) == targets
        fooled = logits.argmax(1) != labels
        if self.loss == "ce":
            return -F.cross_entropy(logits, labels, reduction="none"), fooled
        return -margin(logits, labels), fooled  # z_y - max_{j != y} z_j

    # -- proposals ----------------------------------------------------------------
    def _side(self, iteration: Tensor, height: int, width: int) -> Tensor:
        """Per-sample window side ``[b]`` from the p schedule (reference rounding and bounds)."""
        p = p_schedule(iteration, self.queries, self.p_init)
        side = torch.round(torch.sqrt(p * height * width)).to(torch.int64)
        if self.norm == "l2":
            side = side.clamp_min(3)
            side = side + (side % 2 == 0).to(torch.int64)  # the reference keeps it odd
        return side.clamp(1, min(height, width))

    @staticmethod
    def _position(side: Tensor, extent: int, gen: torch.Generator) -> Tensor:
        """Uniform over the ``extent - side + 1`` valid offsets, per sample."""
        u = torch.rand(side.shape, generator=gen, device=side.device, dtype=torch.float64)
        return (u * (extent - side + 1)).floor().to(torch.int64).clamp_max(extent - side)

    @staticmethod
    def _signs(shape: tuple[int, ...], like: Tensor, gen: torch.Generator) -> Tensor:
        return torch.randint(0, 2, shape, generator=gen, device=like.device).to(like.dtype) * 2 - 1

    def _init_linf(self, x: Tensor, eps: Tensor, gen: torch.Generator) -> Tensor:
        b, c, _, w = x.shape
        stripes = self._signs((b, c, 1, w), x, gen)  # vertical stripes, as the reference
        return (x + batch_view(eps, x) * stripes).clamp(0.0, 1.0)

    def _propose_linf(self, x: Tensor, best: Tensor, eps: Tensor, side: Tensor,
                      gen: torch.Generator) -> Tensor:
        b, c, h, w = x.shape
        mask = _window_mask(self._position(side, h, gen), self._position(side, w, gen), side, h, w)
        be = batch_view(eps, x)
        signs = self._signs((b, c, 1, 1), x, gen)
        # best is inside the ball, so x_best + 2 eps sign projected onto it is x + eps sign
        cand = torch.where(mask, (x + be * signs).clamp(0.0, 1.0), best)
        unchanged = (cand - best).abs().flatten(1).amax(1) < 1e-7
        if bool(unchanged.any()):  # the original code resamples such windows; flip the sign
            flipped = torch.where(mask, (x - be * signs).clamp(0.0, 1.0), best)
            cand = torch.where(batch_view(unchanged, x), flipped, cand)
        return cand

    def _eta_table(self, size: int, like: Tensor) -> Tensor:
        """``[size + 1, size, size]``: ``eta(s)`` in the top-left corner of slice ``s``."""
        table = torch.zeros(size + 1, size, size, dtype=torch.float64)
        for s in range(1, size + 1):
            table[s, :s, :s] = eta(s)
        return table.to(device=like.device, dtype=like.dtype)

    @staticmethod
    def _place(table: Tensor, side: Tensor, top: Tensor, left: Tensor, transpose: Tensor,
               height: int, width: int) -> Tensor:
        """``[b, 1, H, W]``: each sample's eta pattern (maybe transposed) at its window."""
        size = table.shape[-1]
        patterns = table[side]  # [b, size, size]
        patterns = torch.where(transpose.view(-1, 1, 1), patterns.transpose(1, 2), patterns)
        rows = torch.arange(height, device=side.device).view(1, height, 1) - top.view(-1, 1, 1)
        cols = torch.arange(width, device=side.device).view(1, 1, width) - left.view(-1, 1, 1)
        inside = (rows >= 0) & (rows < side.view(-1, 1, 1)) & (cols >= 0) & (cols < side.view(-1, 1, 1))
        n = torch.arange(side.shape[0], device=side.device).view(-1, 1, 1)
        placed = patterns[n, rows.clamp(0, size - 1), cols.clamp(0, size - 1)]
        return (placed * inside).unsqueeze(1)

    @staticmethod
    def _to_sphere(delta: Tensor, eps: Tensor) -> Tensor:
        norm = delta.flatten(1).norm(dim=1)
        return delta / batch_view(norm + 1e-12, delta) * batch_view(eps, delta)

    def _init_l2(self, x: Tensor, eps: Tensor, table: Tensor, gen: torch.Generator) -> Tensor:
        b, c, h, w = x.shape
        side = max(h // 5, 1)
        start_h, start_w = (h - side * 5) // 2, (w - side * 5) // 2
        start_h, start_w = max(start_h, 0), max(start_w, 0)
        blocks_h, blocks_w = h // side, w // side
        delta = torch.zeros_like(x)
        for i in range(blocks_h):
            for j in range(blocks_w):
                top, left = start_h + i * side, start_w + j * side
                if top >= h or left >= w:
                    continue  # the reference's grid runs past the edge there: empty slices
                n = torch.full((b,), side, device=x.device, dtype=torch.int64)
                transpose = torch.rand(b, generator=gen, device=x.device) > 0.5
                pattern = self._place(table, n, torch.full_like(n, top), torch.full_like(n, left),
                                      transpose, h, w)
                delta = delta + pattern * self._signs((b, c, 1, 1), x, gen)
        return (x + self._to_sphere(delta, eps)).clamp(0.0, 1.0)

    def _propose_l2(self, x: Tensor, best: Tensor, eps: Tensor, side: Tensor, table: Tensor,
                    gen: torch.Generator) -> Tensor:
        b, c, h, w = x.shape
        top1, left1 = self._position(side, h, gen), self._position(side, w, gen)
        top2, left2 = self._position(side, h, gen), self._position(side, w, gen)
        win1 = _window_mask(top1, left1, side, h, w)
        win2 = _window_mask(top2, left2, side, h, w)
        delta = best - x
        norm_image = delta.flatten(1).norm(dim=1)
        norm_windows = (delta * (win1 | win2)).flatten(1).norm(dim=1)
        norm_win1 = (delta * win1).pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()  # [b, c, 1, 1]
        transpose = torch.rand(b, generator=gen, device=x.device) > 0.5
        pattern = self._place(table, side, top1, left1, transpose, h, w)
        new = pattern * self._signs((b, c, 1, 1), x, gen) + delta * win1 / (norm_win1 + 1e-12)
        # spread the budget left over plus what both windows held, equally over channels
        mass = ((eps**2 - norm_image**2).clamp_min(0.0) / c + norm_windows**2).sqrt()
        new = new / (new.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt() + 1e-12) * batch_view(mass, x)
        delta = torch.where(win1, new, delta * ~win2)
        return (x + self._to_sphere(delta, eps)).clamp(0.0, 1.0)

    # -- the search -----------------------------------------------------------------
    def _single_run(self, model: nn.Module, x: Tensor, labels: Tensor, eps: Tensor,
                    targets: Tensor | None, gen: torch.Generator,
                    nest: Nesting | None = None) -> tuple[Tensor, Tensor]:
        """One random-search run; returns ``(best [b, ...], fooled [b])``. With nested
        pairs (``nest``), a fooled pair's point also decides the larger epsilons of its
        sample (:meth:`sweep.attacks.active.Nesting.spread`)."""

        def spread(fooled: Tensor) -> Tensor:
            if nest is None:
                return fooled
            covered, src = nest.spread(fooled)
            new = covered & ~fooled
            best[new] = best[src[new]]
            return covered

        _, _, h, w = x.shape
        table = self._eta_table(min(h, w), x) if self.norm == "l2" else None
        best = self._init_linf(x, eps, gen) if table is None else self._init_l2(x, eps, table, gen)
        loss, fooled = self._score(model(best).float(), labels, targets)
        # bf16 search: only an fp32-confirmed sample counts as fooled (and stops)
        fooled = spread(confirm_fooled(model, best, fooled, labels, targets))
        todo = (~fooled).nonzero().squeeze(1)
        for it in range(1, self.queries):  # the initial query was number one
            if todo.numel() == 0:
                break
            xs, best_s, eps_s = x[todo], best[todo], eps[todo]
            # the reference's schedule counts proposals from 0
            side = self._side(torch.full_like(todo, it - 1), h, w)
            if table is None:
                cand = self._propose_linf(xs, best_s, eps_s, side, gen)
            else:
                cand = self._propose_l2(xs, best_s, eps_s, side, table, gen)
            sub_t = None if targets is None else targets[todo]
            cand_loss, cand_fooled = self._score(model(cand).float(), labels[todo], sub_t)
            cand_fooled = confirm_fooled(model, cand, cand_fooled, labels[todo], sub_t)
            accept = (cand_loss < loss[todo]) | cand_fooled
            best[todo] = torch.where(batch_view(accept, cand), cand, best_s)
            loss[todo] = torch.where(accept, cand_loss, loss[todo])
            fooled[todo] = cand_fooled
            fooled = spread(fooled)
            todo = todo[~fooled[todo]]  # fooled samples stop costing queries
        return best, fooled

    @torch.no_grad()
    def _run(self, model: nn.Module, images: Tensor, labels: Tensor, eps: Tensor,
             targets: Tensor | None, generator: torch.Generator) -> Tensor:
        if images.dim() != 4:
            raise ValueError(f"square: images must be [B, C, H, W], got {tuple(images.shape)}")
        # an infinite budget is the whole box: cap it where the box already bounds every point
        eps = self.ops.box_limit(eps, images)
        runs = ActiveSet(**ActiveSet.outcome(images))
        for _ in range(self.restarts):
            rows = runs.rows
            best, fooled = self._single_run(
                model, images[rows], labels[rows], eps[rows],
                None if targets is None else targets[rows], generator,
                None if runs.nest is None else runs.nest.take(rows),
            )
            # keep the best of the last run for survivors, the fooling point for the fooled
            if not runs.take_round(best, fooled):
                break
        return runs.result
