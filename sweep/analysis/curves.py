"""Robustness curves from Parquet rows alone (pure pandas, no torch, no Ray).

A *curve* is robust accuracy as a function of the attack budget epsilon. Every
number here is recomputable from the result rows (``sweep/results/schema.py``) with a
pandas one-liner (docs/curves-and-dashboards.md):

- :func:`curves`: one row per model x attack x norm x epsilon with
  ``robust_accuracy`` (mean of ``robust`` over all samples; a clean error is not
  robust), ``clean_accuracy``, ``n`` and a Wilson 95% interval, plus the
  per-sample worst case over all attacks of one norm as attack ``"ensemble"``.
- :func:`summary`: one row per model x attack: the normalised area under the
  curve and, for minimization attacks, the median minimal perturbation.

The worst case ("ensemble") follows AutoAttack's rule (Croce & Hein, "Reliable
evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks", arXiv:2003.01690): a sample counts as robust only if it survived every
attack the spec ran (not AutoAttack's number, which needs its own attacks and
budgets). ``robust`` is correctness on the adversarial for every attack, targeted
or not. Two choices are ours, both on the conservative side:

- **missing rows**: at each epsilon the ensemble covers only the samples that
  every attack run at that epsilon has a row for (``n`` counts them,
  ``n_missing`` counts the samples left out). Counting a sample that some attack
  never tried as robust would over-report robustness; counting it as fooled would
  under-report it.
- **carry-forward**: an adversarial found at a smaller epsilon lies inside every
  larger epsilon ball, so a sample fooled by any attack at ``eps' <= eps`` is
  fooled at ``eps`` too. The worst-case curve therefore never rises.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

ENSEMBLE = "ensemble"
"""Attack label of the per-sample worst case over all attacks of one norm."""

Z_95 = 1.959963984540054
"""Two-sided 95% normal quantile used by the Wilson interval."""

EPS_DECIMALS = 12
"""Epsilons are matched across attacks after rounding to this many decimals, so
that 8/255 computed in two places still meets itself."""


def eps_key(epsilon: pd.Series) -> pd.Series:
    """Epsilons rounded to ``EPS_DECIMALS``, as Python's ``round`` would: pandas' round
    multiplies first and turns ``1e308`` into ``inf`` (with an overflow warning), after
    which the rows of that epsilon matched nothing."""
    values = epsilon.astype(float).to_numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = np.round(values, EPS_DECIMALS)
    return pd.Series(np.where(np.isfinite(rounded), rounded, values), index=epsilon.index)


REQUIRED_COLUMNS: tuple[str, ...] = (
    "cell_id",
    "model",
    "attack",
    "attack_name",
    "attack_kind",
    "norm",
    "epsilon",
    "strategy",
    "sample_id",
    "label",
    "clean_correct",
    "robust",
    "min_perturbation",
    "target",
    "success",
)

CURVE_COLUMNS: tuple[str, ...] = (
    "model",
    "attack",
    "attack_name",
    "attack_kind",
    "norm",
    "strategy",
    "epsilon",
    "robust_accuracy",
    "ci_low",
    "ci_high",
    "clean_accuracy",
    "n",
    "n_robust",
    "n_missing",
    "targeted_success_rate",
    "attacks",
)

SUMMARY_COLUMNS: tuple[str, ...] = (
    "model",
    "attack",
    "attack_kind",
    "norm",
    "n",
    "clean_accuracy",
    "eps_max",
    "robust_accuracy_at_eps_max",
    "auc",
    "median_min_perturbation",
    "n_min_not_found",
)


def load_results(
    output_dir: str | os.PathLike[str],
    *,
    sweep_id: str | None = None,
    files: Sequence[str] | None = None,
) -> pd.DataFrame:
    """All result rows under ``output_dir`` (hive layout ``model=/attack=``), a folder
    or an object-store URI (:mod:`sweep.results.store`); with ``files`` (relative paths: the
    manifest-verified files of a run) only those files.

    Reads with the fixed schema of :mod:`sweep.results.schema` (dataset discovery would
    otherwise take the schema from whichever file it finds first); files and
    folders starting with ``_`` or ``.`` are ignored, as by ``pd.read_parquet``.
    ``model`` and ``attack`` come back as ``category``, as with
    ``pd.read_parquet(output_dir)``. ``sweep_id`` keeps only that sweep's rows.
    Rows of older schema versions are read as the current one
    (:func:`sweep.results.schema.upgrade_rows`); what that changed is the note in
    ``frame.attrs["notes"]`` (a list of strings, empty when every row is current).

    Raises:
        FileNotFoundError: ``output_dir`` does not exist.
        ValueError: no result rows there (or none of ``sweep_id``).
    """
    import pyarrow.dataset as ds

    from sweep.results import store
    from sweep.results.schema import PARTITION_COLUMNS, upgrade_rows

    if not store.output_exists(output_dir):
        raise FileNotFoundError(f"no such results folder: {os.fspath(output_dir)}")
    dataset = store.open_results(output_dir, files)
    flt = None if sweep_id is None else ds.field("sweep_id") == sweep_id
    frame = dataset.to_table(filter=flt).to_pandas()
    if frame.empty:
        which = "" if sweep_id is None else f" of sweep {sweep_id!r}"
        raise ValueError(f"no result rows{which} under {os.fspath(output_dir)}")
    for col in PARTITION_COLUMNS:
        frame[col] = frame[col].astype("category")
    frame, note = upgrade_rows(frame)
    frame.attrs["notes"] = [] if note is None else [note]
    return frame


def wilson_interval(
    k: np.ndarray | float, n: np.ndarray | float, z: float = Z_95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes out of ``n`` trials.

    Wilson, "Probable inference, the law of succession, and statistical inference"
    (JASA 1927). Unlike the normal approximation it stays inside [0, 1] and is
    not degenerate at 0 or n successes (1/1 gives [0.2065, 1]), which matters
    for small test sets. ``z`` defaults to the 95% two-sided quantile.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        z2 = z * z
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2.0 * n)) / denom
        half = (z / denom) * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _prepare(results: pd.DataFrame) -> pd.DataFrame:
    """Plain-typed copy of the columns curves need, with checks that name the problem."""
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing}; see sweep/results/schema.py")
    if results.empty:
        raise ValueError("no result rows")
    df = results.loc[:, list(REQUIRED_COLUMNS)].copy()
    # labels as category: grouping 10^6 rows by a handful of values is much faster
    # than by Python strings (pd.read_parquet already returns model/attack so)
    for col in ("model", "attack", "attack_name", "attack_kind", "norm", "strategy", "cell_id"):
        df[col] = df[col].astype(str).astype("category") if df[col].dtype != "category" else df[col]
    df["epsilon"] = df["epsilon"].astype(float)
    df["robust"] = df["robust"].astype(bool)
    df["clean_correct"] = df["clean_correct"].astype(bool)
    # targeted success rate: of the targeted rows correct on the clean image, those the
    # attack moved into their target (robust accuracy counts any misclassification)
    targeted = df["target"].astype("int64") >= 0
    df["targeted_clean"] = targeted & df["clean_correct"]
    df["target_hit"] = df["targeted_clean"] & df["success"].astype(bool)
    if (df["robust"] & ~df["clean_correct"]).any():
        raise ValueError("rows with robust=True but clean_correct=False violate the schema")
    if (df["attack"] == ENSEMBLE).any():
        raise ValueError(f"attack label {ENSEMBLE!r} is reserved for the worst case; rename it")
    df["eps_key"] = eps_key(df["epsilon"])
    key = ["model", "attack", "eps_key", "sample_id"]
    dup = df.duplicated(key, keep=False)
    if dup.any():
        example = df.loc[dup].sort_values(key).head(4)
        cells = sorted(set(example["cell_id"]))
        raise ValueError(
            f"{int(dup.sum())} rows repeat a (model, attack, epsilon, sample_id), e.g. "
            f"model={example['model'].iloc[0]!r} attack={example['attack'].iloc[0]!r} "
            f"epsilon={example['epsilon'].iloc[0]!r} sample_id={example['sample_id'].iloc[0]} "
            f"in cells {cells}; several sweeps in one folder? pick one with sweep_id"
        )
    return df


def _single_label(values: pd.Series) -> str:
    uniq = values.unique()
    return str(uniq[0]) if len(uniq) == 1 else "mixed"


def _finish(table: pd.DataFrame) -> pd.DataFrame:
    """Add accuracies and the Wilson interval to counts ``n``, ``n_robust``, ``n_clean``."""
    table["robust_accuracy"] = table["n_robust"] / table["n"]
    table["clean_accuracy"] = table["n_clean"] / table["n"]
    low, high = wilson_interval(table["n_robust"].to_numpy(), table["n"].to_numpy())
    table["ci_low"], table["ci_high"] = low, high
    return table


def _attack_curves(df: pd.DataFrame) -> pd.DataFrame:
    grouped = df.groupby(["model", "attack", "norm", "eps_key"], sort=False, observed=True)
    table = grouped.agg(
        attack_name=("attack_name", _single_label),
        attack_kind=("attack_kind", _single_label),
        strategy=("strategy", _single_label),
        epsilon=("epsilon", "first"),
        n=("robust", "size"),
        n_robust=("robust", "sum"),
        n_clean=("clean_correct", "sum"),
        n_targeted_clean=("targeted_clean", "sum"),
        n_target_hit=("target_hit", "sum"),
    ).reset_index()
    table["n_missing"] = 0
    table["attacks"] = table["attack"]
    # NaN for untargeted attacks (and for a targeted one with no sample correct)
    table["targeted_success_rate"] = table["n_target_hit"] / table["n_targeted_clean"].where(
        table["n_targeted_clean"] > 0
    )
    return _finish(table)


def _ensemble_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Per-sample worst case over the attacks of each (model, norm); see module docstring."""
    per_sample = (
        df.groupby(["model", "norm", "eps_key", "sample_id"], sort=True, observed=True)
        .agg(
            epsilon=("epsilon", "first"),
            robust=("robust", "all"),
            clean_correct=("clean_correct", "all"),
            n_attacks=("attack", "nunique"),
        )
        .reset_index()
    )
    # carry-forward: fooled at a smaller epsilon (by any attack) => fooled here
    per_sample = per_sample.sort_values(["model", "norm", "sample_id", "eps_key"])
    per_sample["robust"] = (
        per_sample.groupby(["model", "norm", "sample_id"], sort=False, observed=True)["robust"]
        .cummin()
        .astype(bool)
    )
    # the attacks run at each epsilon; a sample is kept only if all of them have it
    by_eps = df.groupby(["model", "norm", "eps_key"], sort=False, observed=True)["attack"]
    at_eps = by_eps.agg(lambda s: "+".join(sorted(s.unique())))
    expected = by_eps.nunique().reindex(
        pd.MultiIndex.from_frame(per_sample[["model", "norm", "eps_key"]])
    )
    per_sample["complete"] = per_sample["n_attacks"].to_numpy() == expected.to_numpy()
    kept = per_sample[per_sample["complete"]]
    table = (
        per_sample.groupby(["model", "norm", "eps_key"], sort=False, observed=True)
        .agg(epsilon=("epsilon", "first"), n_seen=("sample_id", "size"))
        .join(
            kept.groupby(["model", "norm", "eps_key"], sort=False, observed=True).agg(
                n=("robust", "size"),
                n_robust=("robust", "sum"),
                n_clean=("clean_correct", "sum"),
            )
        )
        .fillna({"n": 0, "n_robust": 0, "n_clean": 0})
        .join(at_eps.rename("attacks"))
        .reset_index()
    )
    table["n_missing"] = table["n_seen"] - table["n"]
    table = table[table["n"] > 0].drop(columns="n_seen")
    table["attack"] = ENSEMBLE
    table["targeted_success_rate"] = np.nan
    table["attack_name"] = ENSEMBLE
    table["attack_kind"] = ENSEMBLE
    table["strategy"] = "worst-case"
    return _finish(table)


def curves(results: pd.DataFrame, *, ensemble: bool = True) -> pd.DataFrame:
    """Robustness curves: one row per model x attack x norm x epsilon.

    Args:
        results: result rows as read by :func:`load_results` or
            ``pd.read_parquet(output_dir)`` (``model``/``attack`` may be category).
        ensemble: add the per-sample worst case over all attacks of each norm as
            attack ``"ensemble"`` (see the module docstring for missing rows).

    Returns:
        Columns :data:`CURVE_COLUMNS`, sorted by model, norm, attack (the
        ensemble last) and epsilon. ``attacks`` names the attacks behind a row
        (``"+"``-joined for the ensemble). ``targeted_success_rate`` is, for a
        targeted attack, the fraction of the samples correct on the clean image
        whose adversarial hit the target (NaN for untargeted attacks and the worst
        case); robust accuracy counts every misclassification, on target or not.

    Raises:
        ValueError: missing columns, no rows, a reserved attack label, or a
            (model, attack, epsilon, sample_id) that appears twice.
    """
    df = _prepare(results)
    parts = [_attack_curves(df)]
    if ensemble:
        parts.append(_ensemble_curves(df))
    table = pd.concat(parts, ignore_index=True)
    table["_last"] = table["attack"] == ENSEMBLE
    table = table.sort_values(["model", "norm", "_last", "attack", "eps_key"], kind="stable")
    table = table.loc[:, list(CURVE_COLUMNS)].reset_index(drop=True)
    for col in ("model", "attack", "attack_name", "attack_kind", "norm", "strategy", "attacks"):
        table[col] = table[col].astype(str)
    for col in ("n", "n_robust", "n_missing"):
        table[col] = table[col].astype("int64")
    return table


CASCADE_COLUMNS: tuple[str, ...] = (
    "model", "attack", "norm", "epsilon", "position", "member", "n", "n_broken",
    "robust_accuracy_after",
)


def cascade_components(
    results: pd.DataFrame, member_order: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """Per cascade, epsilon and member (in cascade order): how many samples that member
    broke (``n_broken``) and the robust accuracy once it has run
    (``robust_accuracy_after``: not broken by it or any earlier member), AutoAttack's
    "robust accuracy after APGD-CE / APGD-T / ..." log. The last member's value is the
    cascade's robust accuracy.

    ``member_order``: cascade label -> member labels in order (the plan's; attacks
    not in it are left out). Needs the ``broken_by`` column (schema version 2).
    """
    rows = []
    if "broken_by" not in results.columns:
        return pd.DataFrame(columns=list(CASCADE_COLUMNS))
    for attack, order in member_order.items():
        part = results[results["attack"].astype(str) == attack]
        if part.empty:
            continue
        position = part["broken_by"].map({m: i for i, m in enumerate(order)})
        for (model, norm, eps), grp in part.assign(position=position).groupby(
            ["model", "norm", "epsilon"], observed=True, sort=True
        ):
            robust = grp["robust"].astype(bool)
            clean = grp["clean_correct"].astype(bool)
            for i, member in enumerate(order):
                survived = robust | (clean & ~(grp["position"] <= i))
                rows.append({
                    "model": str(model), "attack": attack, "norm": str(norm), "epsilon": float(eps),
                    "position": i, "member": member, "n": len(grp),
                    "n_broken": int((grp["position"] == i).sum()),
                    "robust_accuracy_after": float(survived.mean()),
                })
    return pd.DataFrame(rows, columns=list(CASCADE_COLUMNS))


def normalised_auc(
    epsilons: Iterable[float], accuracy: Iterable[float], clean_accuracy: float
) -> float:
    """Area under a robustness curve divided by its largest epsilon.

    The curve starts at ``(0, clean_accuracy)`` when epsilon 0 is not in the
    grid (with no budget, robust accuracy *is* clean accuracy) and is integrated
    with the trapezoid rule, so the result is the mean robust accuracy over
    ``[0, eps_max]`` under linear interpolation, in [0, 1]. A curve with
    ``eps_max == 0`` returns its single value.
    """
    eps = np.asarray(list(epsilons), dtype=float)
    acc = np.asarray(list(accuracy), dtype=float)
    order = np.argsort(eps, kind="stable")
    eps, acc = eps[order], acc[order]
    if eps.size == 0:
        return math.nan
    if eps[-1] <= 0:
        return float(acc[-1])
    if eps[0] > 0:
        eps = np.concatenate([[0.0], eps])
        acc = np.concatenate([[clean_accuracy], acc])
    area = float(np.sum((eps[1:] - eps[:-1]) * (acc[1:] + acc[:-1]) / 2.0))
    return area / float(eps[-1])


def _min_perturbation_stats(results: pd.DataFrame) -> pd.DataFrame:
    """Median minimal perturbation per model x minimization attack.

    The median runs over the samples the model classifies correctly (a clean
    error needs no perturbation; counting it at 0 would shrink the median);
    samples where the attack found nothing count as +inf, so a median of inf
    says that more than half resisted even an unbounded search.
    """
    df = results[results["attack_kind"].astype(str) == "minimal"]
    if df.empty:
        return pd.DataFrame(
            columns=["model", "attack", "median_min_perturbation", "n_min_not_found"]
        )
    per_sample = (
        df.assign(model=df["model"].astype(str), attack=df["attack"].astype(str))
        .groupby(["model", "attack", "sample_id"], observed=True)
        .agg(mp=("min_perturbation", "first"), ok=("clean_correct", "all"))
        .reset_index()
    )
    correct = per_sample[per_sample["ok"]]
    return (
        correct.groupby(["model", "attack"], observed=True)
        .agg(
            median_min_perturbation=("mp", lambda s: float(np.median(s.to_numpy()))),
            n_min_not_found=("mp", lambda s: int(np.isinf(s.to_numpy()).sum())),
        )
        .reset_index()
    )


def summary(curve_table: pd.DataFrame, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model x attack (ensemble included): AUC and minimal-perturbation stats.

    ``auc`` is :func:`normalised_auc` of the curve, with the clean accuracy of its
    smallest epsilon as the value at 0. ``median_min_perturbation`` and
    ``n_min_not_found`` need ``results`` and are NaN / 0 for fixed-epsilon attacks.
    """
    rows = []
    for (model, attack, norm), grp in curve_table.groupby(
        ["model", "attack", "norm"], sort=False, observed=True
    ):
        grp = grp.sort_values("epsilon")
        last = grp.iloc[-1]
        rows.append(
            {
                "model": model,
                "attack": attack,
                "attack_kind": grp["attack_kind"].iloc[0],
                "norm": norm,
                "n": int(grp["n"].max()),
                "clean_accuracy": float(grp["clean_accuracy"].iloc[0]),
                "eps_max": float(last["epsilon"]),
                "robust_accuracy_at_eps_max": float(last["robust_accuracy"]),
                "auc": normalised_auc(
                    grp["epsilon"], grp["robust_accuracy"], float(grp["clean_accuracy"].iloc[0])
                ),
            }
        )
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS[:-2]))
    stats = (
        _min_perturbation_stats(results)
        if results is not None
        else pd.DataFrame(columns=["model", "attack", "median_min_perturbation", "n_min_not_found"])
    )
    table = table.merge(stats, on=["model", "attack"], how="left")
    table["median_min_perturbation"] = table["median_min_perturbation"].astype(float)
    table["n_min_not_found"] = table["n_min_not_found"].fillna(0).astype("int64")
    return table.loc[:, list(SUMMARY_COLUMNS)]
