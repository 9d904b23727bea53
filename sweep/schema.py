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

import pyarrow as pa

SCHEMA_VERSION = 2  # 2: adv_nonfinite

PARTITION_COLUMNS: tuple[str, ...] = ("model", "attack")

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
    ("strategy", pa.string(), "incremental or independent"),
    ("shard", pa.int32(), "data shard index"),
    ("sample_id", pa.int64(), "stable index into the dataset"),
    ("label", pa.int64(), "true class"),
    ("target", pa.int64(), "target class of a targeted attack, -1 if untargeted"),
    ("clean_pred", pa.int64(), "prediction on the clean image"),
    ("adv_pred", pa.int64(), "prediction on the adversarial image (verified re-run)"),
    ("clean_correct", pa.bool_(), "clean_pred == label"),
    ("success", pa.bool_(), "attack succeeded at this epsilon (verified)"),
    ("robust", pa.bool_(), "clean_correct and not success"),
    ("perturbation", pa.float64(), "norm of adv - clean in the attack's norm"),
    ("min_perturbation", pa.float64(), "minimal fooling norm (minimal attacks; inf if none, NaN for fixed)"),
    ("adv_nonfinite", pa.bool_(), "the model's logits on the adversarial held NaN/inf (adv_pred -1; flagged; absent before v2)"),
    ("seed", pa.int64(), "seed the cell's attack ran with"),
    ("cell_seconds", pa.float64(), "wall time of the whole cell's attack (same on all its rows)"),
    ("schema_version", pa.int32(), "version of this schema"),
)

SCHEMA = pa.schema([pa.field(name, dtype) for name, dtype, _ in COLUMNS])

# What is inside each shard file: the partition columns live in the path.
FILE_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in PARTITION_COLUMNS])

# What a reader gets back from the hive-partitioned dataset.
DATASET_SCHEMA = pa.schema(
    [*FILE_SCHEMA, *(pa.field(c, pa.string()) for c in PARTITION_COLUMNS)]
)
