"""Stored adversarials and transfer rows, read back from the output alone.

Only files the manifest vouches for are read (:meth:`sweep.results.manifest.Manifest.verified`,
and an adversarial file's recorded size), of the latest plan's cells: the same rule
as every other reader. No torch: :func:`sweep.api.load_adversarials` makes tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweep.results import adversarials as advfiles
from sweep.results import store
from sweep.results.manifest import Manifest

META_COLUMNS = ("model", "attack", "cell_id", "sample_id", "epsilon", "label", "target", "adv_pred")
TRANSFER_COLUMNS = ("attack", "norm", "epsilon", "source_model", "model", "n", "robust_accuracy")


@dataclass(frozen=True)
class StoredAdversarials:
    """Rows of :data:`META_COLUMNS` and their images: ``images[i]`` and ``clean[i]``
    (``[N, C, H, W]`` float32) belong to ``rows.iloc[i]``."""

    rows: pd.DataFrame
    images: np.ndarray
    clean: np.ndarray


def adversarial_files(output: store.Output) -> list[tuple[str, str, str]]:
    """``(model, attack, relpath)`` of every verified adversarial file of the latest plan."""
    manifest = Manifest(output)
    plan = manifest.read_plan()
    if plan is None:
        return []
    owner = {cid: (p.model, p.attack) for p in plan.pairs for cid in p.cells}
    recs = manifest.verified(list(owner))
    sizes = store.result_sizes(output, advfiles.ADV_DIR)
    return [(*owner[cid], r.adv_file) for cid, r in recs.items()
            if r.adv_file and sizes.get(r.adv_file) == r.adv_bytes]


def read_adversarials(
    output: store.Output,
    *,
    model: str | None = None,
    attack: str | None = None,
    epsilon: float | None = None,
    limit: int | None = None,
) -> StoredAdversarials:
    """The stored adversarials of ``model`` x ``attack`` (None: all) at ``epsilon``
    (None: every epsilon); at most ``limit`` rows. Raises ``FileNotFoundError`` when
    ``output`` does not exist, ``ValueError`` when nothing matches."""
    if not store.output_exists(output):
        raise FileNotFoundError(f"no such results folder: {os.fspath(output)}")
    metas, images, cleans = [], [], []
    count = 0
    for m, a, rel in adversarial_files(output):
        if (model is not None and m != model) or (attack is not None and a != attack):
            continue
        table = advfiles.read_adversarials(output, rel)
        if epsilon is not None:
            eps = table["epsilon"].to_numpy()
            table = table.filter(np.isclose(eps, epsilon, rtol=1e-9, atol=1e-12))
        if limit is not None:
            table = table.slice(0, max(0, limit - count))
        if not table.num_rows:
            continue
        meta = table.select([c for c in META_COLUMNS if c not in ("model", "attack")]).to_pandas()
        meta.insert(0, "attack", a)
        meta.insert(0, "model", m)
        metas.append(meta)
        images.append(advfiles.images(table, "image"))
        cleans.append(advfiles.images(table, "clean"))
        count += table.num_rows
        if limit is not None and count >= limit:
            break
    if not metas:
        what = ", ".join(f"{k}={v!r}" for k, v in (("model", model), ("attack", attack), ("epsilon", epsilon))
                         if v is not None)
        raise ValueError(f"no stored adversarials under {os.fspath(output)}" + (f" for {what}" if what else "")
                         + " (is `adversarials.keep` none, or no cell done?)")
    return StoredAdversarials(pd.concat(metas, ignore_index=True), np.concatenate(images), np.concatenate(cleans))


def transfer_rows(output: store.Output) -> pd.DataFrame:
    """The verified transfer rows of the latest plan (empty when it has none)."""
    from sweep.results.schema import PARTITION_COLUMNS

    manifest = Manifest(output)
    plan = manifest.read_plan()
    if plan is None or not plan.transfers:
        return pd.DataFrame()
    recs = manifest.verified(plan.transfer_ids())
    if not recs:
        return pd.DataFrame()
    dataset = store.open_results(output, sorted(r.file for r in recs.values()), under=advfiles.TRANSFER_DIR)
    frame = dataset.to_table().to_pandas()
    for col in PARTITION_COLUMNS:
        frame[col] = frame[col].astype("category")
    return frame


def transfer_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy of each target (``model``) on each source's adversarials, per
    attack and epsilon: :data:`TRANSFER_COLUMNS`, one row per (attack, epsilon, source,
    target). The diagonal (source = target) re-checks the cells' own verdicts."""
    if rows.empty:
        return pd.DataFrame(columns=list(TRANSFER_COLUMNS))
    keys = ["attack", "norm", "epsilon", "source_model", "model"]
    grouped = rows.groupby(keys, observed=True)["robust"]
    out = pd.DataFrame({"n": grouped.size(), "robust_accuracy": grouped.mean()}).reset_index()
    for col in ("attack", "model", "source_model"):
        out[col] = out[col].astype(str)
    return out[list(TRANSFER_COLUMNS)].sort_values(keys).reset_index(drop=True)
