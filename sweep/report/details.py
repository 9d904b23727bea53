"""What a researcher asks of a sweep after its curves: what each attack cost, how it was
set, how each class fares, and where its MLflow run is. Pure pandas over the result
rows and the plan (``_manifest/plan.json``), no plotting, so ``sweep curves`` could
use it too.
"""

from __future__ import annotations

import json
import urllib.parse

import pandas as pd

from sweep.analysis.curves import EPS_DECIMALS
from sweep.results.plan import Plan

COST_COLUMNS = ("model", "attack", "cells", "samples", "seconds", "ms_per_sample")


def attack_costs(results: pd.DataFrame) -> pd.DataFrame:
    """Wall time per model x attack: the sum of ``cell_seconds`` over its cells (each
    cell's time is on all its rows: counted once per cell), and per sample.

    A cell's time is the worker's wall time for the attack (all its epsilons), so it
    includes waiting for a shared CPU; compare attacks within one sweep, not across machines.
    """
    if "cell_seconds" not in results.columns:
        return pd.DataFrame(columns=list(COST_COLUMNS))
    cells = results.drop_duplicates("cell_id").assign(
        model=lambda d: d["model"].astype(str), attack=lambda d: d["attack"].astype(str))
    samples = (results.assign(model=results["model"].astype(str),
                              attack=results["attack"].astype(str))
               .groupby(["model", "attack"])["sample_id"].nunique().rename("samples"))
    table = (cells.groupby(["model", "attack"])
             .agg(cells=("cell_id", "size"), seconds=("cell_seconds", "sum"))
             .join(samples).reset_index())
    table["ms_per_sample"] = 1000.0 * table["seconds"] / table["samples"]
    return table.loc[:, list(COST_COLUMNS)]


def attack_settings(plan: Plan) -> dict[str, str]:
    """Attack label -> its settings as run (``pgd · linf · incremental · steps=20, ...``),
    every hyper-parameter with defaults filled in, from the plan's ``pairs``; ``{}``
    when the folder has no plan."""
    settings: dict[str, str] = {}
    for pair in plan.pairs:
        if pair.attack in settings:
            continue
        target = pair.targeted
        parts = [pair.attack_name, pair.norm, pair.strategy,
                 "untargeted" if not target else f"targeted ({target.get('mode')})"]
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(pair.params.items()))
        settings[pair.attack] = " · ".join(p for p in parts if p) + (
            f" · {shown}" if shown else "")
    return settings


def per_class(results: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy per true class: one row per model x norm x epsilon x attack x
    label with ``n`` (samples of that class), ``clean_accuracy`` and ``robust_accuracy``
    (the same definitions as :func:`sweep.analysis.curves.curves`, within one class)."""
    df = results.assign(model=results["model"].astype(str), attack=results["attack"].astype(str),
                        norm=results["norm"].astype(str),
                        eps_key=results["epsilon"].astype(float).round(EPS_DECIMALS))
    return (df.groupby(["model", "norm", "eps_key", "attack", "label"])
            .agg(epsilon=("epsilon", "first"), n=("sample_id", "size"),
                 clean_accuracy=("clean_correct", "mean"),
                 robust_accuracy=("robust", "mean"))
            .reset_index().drop(columns="eps_key"))


def run_links(tracking_uri: str | None, experiment: str | None, sweep_id: str | None,
              ui: str | None = None) -> dict[tuple[str, str], str]:
    """``(model, attack)`` -> the URL of its MLflow run in the MLflow UI (``attack`` is
    ``ensemble/<norm>`` for a worst-case run, ``""`` for the parent), found by tags.

    ``ui`` is where the MLflow UI answers: an ``http(s)`` tracking URI is its own UI;
    a local store is shown by ``mlflow ui`` (default ``http://127.0.0.1:5000``).
    Best effort: ``{}`` if MLflow is off or unreachable (the report never waits on it).
    Reads MLflow only: the report never writes to it.
    """
    from sweep.tracking.runs import (
        ATTACK,
        MODEL,
        NORM,
        PARENT_ROLE,
        ROLE,
        SWEEP_ID,
        WORST_CASE_ROLE,
    )

    if not (tracking_uri and experiment and sweep_id):
        return {}
    base = (ui or (tracking_uri if tracking_uri.startswith(("http://", "https://"))
                   else "http://127.0.0.1:5000")).rstrip("/")
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return {}
        runs = client.search_runs([exp.experiment_id], f"tags.`{SWEEP_ID}` = '{sweep_id}'",
                                  max_results=5000)
    except Exception:  # links are a convenience; Parquet has the numbers
        return {}
    links: dict[tuple[str, str], str] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):  # the latest wins
        tags = run.data.tags
        role, model = tags.get(ROLE), tags.get(MODEL, "")
        attack = ("" if role == PARENT_ROLE else
                  f"ensemble/{tags.get(NORM, '')}" if role == WORST_CASE_ROLE
                  else tags.get(ATTACK, ""))
        links[(model, attack)] = (f"{base}/#/experiments/{urllib.parse.quote(exp.experiment_id)}"
                                  f"/runs/{urllib.parse.quote(run.info.run_id)}")
    return links
