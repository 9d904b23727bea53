"""The Parquet result schema: one row per (cell, sample, epsilon).

This is a public contract (README, "Results schema"): other code, notebooks and
dashboards read these columns. Every shard is written with exactly this schema
(dataset discovery takes the schema from the first file it finds, so a column
missing there would silently disappear), and readers pass it back in.

``model`` and ``attack`` are hive partition columns: they live in the directory
names (``model=.../attack=...``), not inside the files, and pandas returns them
as ``category``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 3
"""Version 3 adds ``source_model``: null on a cell's own rows, the crafting model on
transfer rows (``_transfer/``, the adversarials of ``source_model`` evaluated on
``model``). A cell's rows are otherwise those of version 2, so version 3 leaves the
cell ids as they were (:data:`CELL_ID_VERSION`) and files of version 2 read with a
null ``source_model``.

Version 2: ``robust`` is the accuracy verdict ``clean_correct and
adv_pred == label and perturbation <= epsilon`` for every attack. In version 1 it was
``clean_correct and not success``, which for targeted attacks counted an adversarial
misclassified into another class than the target as robust; :func:`upgrade_rows`
says how readers treat such files. Version 2 also adds ``broken_by`` (cascades) and
``adv_nonfinite`` (NaN/inf logits on the adversarial; ``adv_pred`` is then -1)."""

CELL_ID_VERSION = 2
"""The schema version hashed into cell and sweep ids (:mod:`sweep.spec.grid`): the last
version that changed a cell's rows. Version 3 added a column that cells leave null,
so their ids, and the sweeps already computed, stay valid."""

PARTITION_COLUMNS: tuple[str, ...] = ("model", "attack")

# Tolerance of "perturbation <= epsilon", here and in the kernels' verification
# (sweep.attacks.norms.within): float32 round trips (x + delta - x != delta) must not
# reject valid adversarials (ART #507).
EPS_RTOL = 1e-5
EPS_ATOL = 1e-6

# name, type, meaning
COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("sweep_id", pa.string(), "hash of the spec content that determines results"),
    ("cell_id", pa.string(), "hash of everything that determines this cell's result"),
    ("model", pa.string(), "model name from the spec (partition column)"),
    ("attack", pa.string(), "attack label from the spec (partition column)"),
    ("attack_name", pa.string(), "registered attack name (pgd, cw, ...)"),
    ("attack_kind", pa.string(), "fixed (searches within eps) or minimal (minimal norm)"),
    ("norm", pa.string(), "linf, l2, l1 or l0"),
    ("epsilon", pa.float64(), "attack budget of this row"),
    ("strategy", pa.string(), "incremental, independent or nested"),
    ("shard", pa.int32(), "data shard index"),
    ("sample_id", pa.int64(), "stable index into the dataset"),
    ("label", pa.int64(), "true class"),
    ("target", pa.int64(), "target class of a targeted attack, -1 if untargeted"),
    ("clean_pred", pa.int64(), "prediction on the clean image"),
    ("adv_pred", pa.int64(), "prediction on the adversarial image (verified re-run)"),
    ("clean_correct", pa.bool_(), "clean_pred == label"),
    ("success", pa.bool_(), "attack met its criterion at this epsilon (verified): misclassified, or the target hit if targeted"),
    ("robust", pa.bool_(), "clean_correct and adv_pred == label and perturbation <= epsilon (since v2)"),
    ("perturbation", pa.float64(), "norm of adv - clean in the attack's norm"),
    ("min_perturbation", pa.float64(), "minimal fooling norm (minimal attacks; inf if none, NaN for fixed)"),
    ("broken_by", pa.string(), "cascades: label of the member whose adversarial this row reports (null: none broke the sample, or not a cascade; since v2)"),
    ("adv_nonfinite", pa.bool_(), "the model's logits on the adversarial held NaN/inf (adv_pred -1; not robust; flagged; since v2)"),
    ("seed", pa.int64(), "seed the cell's attack ran with"),
    ("cell_seconds", pa.float64(), "wall time of the whole cell's attack (same on all its rows)"),
    ("source_model", pa.string(), "transfer rows: the model the adversarial was crafted on (model: the one evaluated); null on a cell's own rows (since v3)"),
    ("schema_version", pa.int32(), "version of this schema"),
)

SCHEMA = pa.schema([pa.field(name, dtype) for name, dtype, _ in COLUMNS])

# What is inside each shard file: the partition columns live in the path.
FILE_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in PARTITION_COLUMNS])

# What a reader gets back from the hive-partitioned dataset.
DATASET_SCHEMA = pa.schema(
    [*FILE_SCHEMA, *(pa.field(c, pa.string()) for c in PARTITION_COLUMNS)]
)


def upgrade_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Rows of any schema version read as the current one, with a note on what changed.

    Version-1 files stored ``robust = clean_correct and not success``. Their rows are
    re-read as version 2 does, ``clean_correct and adv_pred == label and perturbation
    <= epsilon``, from the verified ``adv_pred`` and ``perturbation`` they carry. That
    is exact for untargeted attacks. For targeted ones it corrects every row whose
    adversarial missed its target but was misclassified; a version-1 targeted curve of
    the ``incremental`` strategy may still over-report, since it kept the last
    adversarial rather than the worst (re-run the sweep to get version-2 rows).

    ``frame`` needs ``schema_version``, ``clean_correct``, ``adv_pred``, ``label``,
    ``perturbation``, ``epsilon`` and ``robust``; it is returned as is (note ``None``)
    when every row is current.
    """
    # version 2 -> 3 only added source_model, which the reader's schema fills with null
    old = frame["schema_version"] < 2
    n_old = int(old.sum())
    if not n_old:
        return frame, None
    frame = frame.copy()
    sub = frame.loc[old]
    within = sub["perturbation"] <= sub["epsilon"] * (1 + EPS_RTOL) + EPS_ATOL
    fixed = sub["clean_correct"].astype(bool) & (sub["adv_pred"] == sub["label"]) & within
    changed = int((fixed != sub["robust"].astype(bool)).sum())
    frame.loc[old, "robust"] = fixed
    frame["robust"] = frame["robust"].astype(bool)
    note = (
        f"{n_old} rows of schema version 1 read as version 2: robust = clean_correct and "
        f"adv_pred == label and perturbation <= epsilon (version 1 stored clean_correct and "
        f"not success, which counted a targeted attack's off-target misclassification as "
        f"robust); {changed} rows changed. Targeted incremental rows of version 1 may still "
        f"over-report: re-run the sweep for version-2 rows."
    )
    return frame, note
