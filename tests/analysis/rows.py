"""Hand-made result rows for the curves tests, written as a real hive-partitioned dataset.

Outcomes are spelled one character per epsilon, so a test reads like its answer:
``"x"`` clean error, ``"R"`` robust (correct and not fooled), ``"F"`` fooled.
``attack_rows("m", "pgd", [0.1, 0.2], ["xx", "RR", "RF", "FF"])`` is a 4-sample cell
where sample 2 survives 0.1 but not 0.2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sweep.results.schema import FILE_SCHEMA, SCHEMA_VERSION

NUM_CLASSES = 10


def attack_rows(
    model: str,
    attack: str,
    epsilons: Sequence[float],
    outcomes: Sequence[str] | Mapping[int, str] | None = None,
    *,
    name: str | None = None,
    kind: str = "fixed",
    norm: str = "linf",
    strategy: str = "incremental",
    labels: Sequence[int] | None = None,
    min_perturbation: Sequence[float] | Mapping[int, float] | None = None,
    cell_id: str | None = None,
    sweep_id: str = "sweep-test",
    shard: int = 0,
) -> list[dict[str, Any]]:
    """Rows of one cell: one per (sample, epsilon).

    ``outcomes`` maps sample_id -> one character per epsilon (a sequence means
    sample ids 0..n-1). For a minimization attack (``kind="minimal"``) give
    ``min_perturbation`` instead and outcomes follow from it: robust iff the
    sample is correct and its minimal perturbation exceeds epsilon (a clean
    error has minimal perturbation 0, as the attack base class reports).
    """
    if kind == "minimal" and min_perturbation is not None:
        mp = (
            dict(enumerate(min_perturbation))
            if not isinstance(min_perturbation, Mapping)
            else dict(min_perturbation)
        )
        if outcomes is None:
            outcomes = {
                sid: "".join("x" if m == 0 else ("R" if m > e else "F") for e in epsilons)
                for sid, m in mp.items()
            }
    else:
        mp = {}
    assert outcomes is not None, "give outcomes (or min_perturbation for a minimal attack)"
    outcome_map = dict(enumerate(outcomes)) if not isinstance(outcomes, Mapping) else dict(outcomes)
    rows = []
    for sid, code in outcome_map.items():
        assert len(code) == len(epsilons), f"sample {sid}: {code!r} needs one char per epsilon"
        label = labels[sid] if labels is not None else sid % NUM_CLASSES
        wrong = (label + 1) % NUM_CLASSES
        correct = code[0] != "x"
        assert all((c == "x") == (not correct) for c in code), (
            "a clean error is one on every epsilon"
        )
        for eps, c in zip(epsilons, code, strict=True):
            robust = c == "R"
            success = not robust  # a clean error counts as fooled with a zero perturbation
            rows.append(
                {
                    "sweep_id": sweep_id,
                    "cell_id": cell_id or f"{model}-{attack}-{shard}",
                    "model": model,
                    "attack": attack,
                    "attack_name": name or attack,
                    "attack_kind": kind,
                    "norm": norm,
                    "epsilon": float(eps),
                    "strategy": strategy,
                    "shard": shard,
                    "sample_id": int(sid),
                    "label": int(label),
                    "target": -1,
                    "clean_pred": int(label if correct else wrong),
                    "adv_pred": int(label if robust else wrong),
                    "clean_correct": correct,
                    "success": success,
                    "robust": robust,
                    "perturbation": 0.0 if (robust or not correct) else float(eps),
                    "min_perturbation": float(mp.get(sid, 0.0 if not correct else math.inf))
                    if kind == "minimal"
                    else math.nan,
                    "seed": 0,
                    "cell_seconds": 1.0,
                    "schema_version": SCHEMA_VERSION,
                }
            )
    return rows


def write_results(root: Path, *cells: Iterable[dict[str, Any]]) -> Path:
    """Write each cell's rows to ``root/model=<m>/attack=<a>/<cell_id>.parquet`` (FILE_SCHEMA)."""
    for rows in cells:
        rows = list(rows)
        first = rows[0]
        folder = root / f"model={first['model']}" / f"attack={first['attack']}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(
            [{f.name: r.get(f.name) for f in FILE_SCHEMA} for r in rows], schema=FILE_SCHEMA
        )
        pq.write_table(table, folder / f"{first['cell_id']}.parquet")
    return root


def basic_cells() -> list[list[dict[str, Any]]]:
    """The golden ``basic`` sweep: one model, 4 samples (sample 0 a clean error),
    PGD and Square tie at every epsilon, FMN (minimal) ties at 0.1; the worst case
    is below all three. Expected numbers: golden/basic_curves.csv, basic_summary.csv."""
    eps = [0.1, 0.2]
    return [
        attack_rows("m", "pgd", eps, ["xx", "RR", "RF", "FF"]),
        attack_rows("m", "square", eps, ["xx", "FF", "RF", "RR"]),
        attack_rows("m", "fmn", eps, kind="minimal", min_perturbation=[0.0, 0.15, 0.15, 0.05]),
    ]
