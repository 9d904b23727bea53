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


def _show(ax, image: np.ndarray, **kwargs) -> None:
    """One ``[C, H, W]`` image in [0, 1] (grey for one channel)."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest", **kwargs)
    else:
        ax.imshow(np.clip(np.moveaxis(image, 0, -1), 0, 1), interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])


def panel_png(clean: np.ndarray, adv: np.ndarray, labels: np.ndarray, preds: np.ndarray, *,
              mark_pixels: bool, title: str) -> bytes:
    """Rows of clean / adversarial / perturbation (amplified to the full grey range,
    0.5 = unchanged); ``mark_pixels``: a red square around each changed pixel."""
    n = len(clean)
    fig = Figure(figsize=(4.8, 1.7 * max(n, 1) + 0.4))
    fig.suptitle(title, fontsize=9)
    for i in range(n):
        delta = adv[i] - clean[i]
        scale = float(np.abs(delta).max())
        amplified = 0.5 + delta / (2 * scale) if scale > 0 else np.full_like(delta, 0.5)
        changed = np.argwhere(np.abs(delta).max(axis=0) > 0) if mark_pixels else []
        for j, (image, text) in enumerate((
            (clean[i], f"clean: true {int(labels[i])}"),
            (adv[i], f"adversarial: pred {int(preds[i])}"),
            (amplified, f"perturbation x{0.5 / scale:.3g}" if scale > 0 else "no change"),
        )):
            ax = fig.add_subplot(max(n, 1), 3, 3 * i + j + 1)
            _show(ax, image)
            ax.set_title(text, fontsize=8, color="#b00020" if j == 1 and preds[i] != labels[i] else "black")
            for y, x in changed if j else []:
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return buf.getvalue()
