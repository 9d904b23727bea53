"""The adversarial gallery: per model x attack, clean / adversarial / amplified
perturbation of a few stored samples at one epsilon, with the true and predicted
classes; for an L0 attack (One-Pixel) the changed pixels are marked.

One PNG per (model, attack) (:class:`Panel`), drawn from the stored adversarials
alone (:mod:`sweep.analysis.adversarials`): the report inlines it as a ``data:``
image, the tracker logs it as an MLflow artifact of the child run.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sweep.analysis.adversarials import adversarial_files
from sweep.results import adversarials as advfiles
from sweep.results import store
from sweep.results.manifest import Manifest

SAMPLES = 4  # rows of a panel


@dataclass(frozen=True)
class Panel:
    model: str
    attack: str
    norm: str
    epsilon: float
    png: bytes
    samples: int

    @property
    def caption(self) -> str:
        return (f"{self.model} / {self.attack}: {self.samples} stored samples at {self.norm} "
                f"ε = {self.epsilon:g} (clean, adversarial, perturbation amplified)")


def pick_epsilon(stored: Sequence[float], wanted: float | None) -> float:
    """``wanted`` when stored (within 1e-6 relative), else the middle non-zero epsilon."""
    eps = sorted(set(stored))
    if wanted is not None:
        for e in eps:
            if math.isclose(e, wanted, rel_tol=1e-6, abs_tol=1e-12):
                return e
    nonzero = [e for e in eps if e > 0] or eps
    return nonzero[len(nonzero) // 2]


def panels(output: store.Output, *, epsilon: float | None = None, samples: int = SAMPLES) -> list[Panel]:
    """One :class:`Panel` per (model, attack) with stored adversarials (none: ``[]``)."""
    plan = Manifest(output).read_plan()
    norms = {} if plan is None else {(p.model, p.attack): p.norm for p in plan.pairs}
    by_pair: dict[tuple[str, str], list[str]] = {}
    for model, attack, rel in adversarial_files(output):
        by_pair.setdefault((model, attack), []).append(rel)
    out = []
    for (model, attack), rels in sorted(by_pair.items()):
        table = advfiles.read_adversarials(output, sorted(rels)[0])
        eps = pick_epsilon(table["epsilon"].to_pylist(), epsilon)
        at = table.filter(np.isclose(table["epsilon"].to_numpy(), eps, rtol=1e-9, atol=1e-12))
        label, pred = at["label"].to_numpy(), at["adv_pred"].to_numpy()
        order = np.lexsort((at["sample_id"].to_numpy(), pred == label))[:samples]  # fooled first
        norm = norms.get((model, attack), "")
        png = panel_png(advfiles.images(at, "clean")[order], advfiles.images(at, "image")[order],
                        label[order], pred[order], mark_pixels=norm == "l0",
                        title=f"{model} / {attack} at {norm} ε={eps:g}")
        out.append(Panel(model, attack, norm, eps, png, len(order)))
    return out


PANEL_WIDTH_PX = 432  # 4.8 in at DPI
DPI = 90
TITLE_PX = 30  # the panel's title above the mosaic
CAPTION_PX = 22  # each row's captions above its tiles


def _rgb(image: np.ndarray) -> np.ndarray:
    """One ``[C, H, W]`` image in [0, 1] as ``[H, W, 3]`` (grey repeated for one channel)."""
    hwc = np.clip(np.moveaxis(image, 0, -1), 0, 1)
    return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else hwc[..., :3]


def panel_png(clean: np.ndarray, adv: np.ndarray, labels: np.ndarray, preds: np.ndarray, *,
              mark_pixels: bool, title: str) -> bytes:
    """Rows of clean / adversarial / perturbation (amplified to the full grey range,
    0.5 = unchanged); ``mark_pixels``: a red square around each changed pixel.

    The tiles are laid out in one image shown on one axes, with the captions as text
    over it: a grid of subplots cost ~0.25 s a panel (axes set-up, ticks and
    tight_layout for 12 axes), this ~0.05 s, and the gallery is drawn after the cells,
    on the sweep's critical path."""
    n = max(len(clean), 1)
    h, w = (clean.shape[2], clean.shape[3]) if len(clean) else (8, 8)
    gap_x = max(1, math.ceil(w / 8))
    scale = PANEL_WIDTH_PX / (3 * w + 4 * gap_x)  # display pixels per image pixel
    gap_y = math.ceil(CAPTION_PX / scale)  # room for the captions above each row
    mosaic = np.ones((n * (h + gap_y), 3 * w + 4 * gap_x, 3), np.float32)
    captions: list[tuple[float, float, str, str]] = []
    marks: list[tuple[float, float]] = []
    for i in range(len(clean)):
        delta = adv[i] - clean[i]
        scale_i = float(np.abs(delta).max())
        amplified = 0.5 + delta / (2 * scale_i) if scale_i > 0 else np.full_like(delta, 0.5)
        changed = np.argwhere(np.abs(delta).max(axis=0) > 0) if mark_pixels else []
        y0 = i * (h + gap_y) + gap_y
        for j, (image, text) in enumerate((
            (clean[i], f"clean: true {int(labels[i])}"),
            (adv[i], f"adversarial: pred {int(preds[i])}"),
            (amplified, f"perturbation x{0.5 / scale_i:.3g}" if scale_i > 0 else "no change"),
        )):
            x0 = gap_x + j * (w + gap_x)
            mosaic[y0 : y0 + h, x0 : x0 + w] = _rgb(image)
            fooled = j == 1 and preds[i] != labels[i]
            captions.append((x0 + w / 2, y0 - 0.15 * gap_y, text, "#b00020" if fooled else "black"))
            marks += [(x0 + x - 0.5, y0 + y - 0.5) for y, x in changed] if j else []
    mosaic_px = mosaic.shape[0] * scale
    fig = Figure(figsize=(PANEL_WIDTH_PX / DPI, (mosaic_px + TITLE_PX) / DPI), dpi=DPI)
    fig.suptitle(title, fontsize=9, y=1 - 6 / (mosaic_px + TITLE_PX), va="top")
    ax = fig.add_axes((0, 0, 1, mosaic_px / (mosaic_px + TITLE_PX)))
    ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    for x, y, text, color in captions:
        ax.text(x, y, text, ha="center", va="bottom", fontsize=8, color=color)
    for x, y in marks:
        ax.add_patch(Rectangle((x, y), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
