"""Robustness curves into the sweep's MLflow runs, so the MLflow UI draws them.

Called through the run's one MLflow writer (:meth:`sweep.tracking.runs.Tracker.curves`,
by ``sweep run`` at the end and by ``sweep sync``), with the client, tag names and
batch limits of :mod:`sweep.tracking.runs`. Everything logged is computed from the run's
analysis (:class:`sweep.analysis.collect.ReportData`, built once by the pipeline from the
manifest-verified files); runs are found by their tags, never by name:

- parent run: tag ``sweep.sweep_id`` (and ``sweep.role=parent``, or no
  ``sweep.model`` tag). It gets the artifacts under ``curves/``: one PNG per
  model (curves with CI bands), a heatmap PNG per (norm, epsilon), the
  minimal-perturbation histogram, ``curves.csv``, ``summary.csv``,
  ``sanity_flags.json`` and ``epsilon_steps.json`` (step -> epsilon for every
  run below), plus the tag ``sweep.sanity_flags`` (how many).
- child runs (tags ``sweep.sweep_id``, ``sweep.model``, ``sweep.attack``): metric
  ``robust_accuracy`` with step = index of the epsilon in the curve's ascending
  epsilons (logged here only if the run has none yet: the tracker logs it when
  the pair's cells are done), ``robust_accuracy_ci_low`` / ``_ci_high`` at the
  same steps, ``auc`` and, for minimization attacks, ``median_min_perturbation``;
  the tag ``sweep.epsilon_steps`` (JSON step -> epsilon) and the artifacts
  ``curves/epsilon_steps.json`` and the model's curve PNG.
- one run per model x norm for the worst case over all attacks (tags
  ``sweep.role=worst-case``, ``sweep.attack=ensemble``, ``sweep.norm``, child of
  the parent), with the same metrics as a child run (``clean_accuracy``,
  ``samples``, ``robust_accuracy`` and ``epsilon`` per step,
  ``robust_accuracy_eps_<eps>``), so selecting a model's runs in the chart view
  draws every attack's curve next to the worst case and a search on a metric
  finds it too. A norm with a single attack gets none: its worst case is that
  attack's curve, already in the attack's child run.

Idempotent: MLflow appends a point when a metric is logged again, so metrics go
into a run once (tag ``sweep.curves_logged``); a worst-case run whose curve
changed (fingerprint tag) is deleted and logged again; artifacts are overwritten.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sweep.analysis import plots
from sweep.analysis.curves import ENSEMBLE
from sweep.analysis.sanity import flags_frame
from sweep.tracking.runs import (
    ATTACK,
    ATTACKS,
    CURVES_LOGGED,
    EPSILON_METRIC,
    EPSILON_STEPS,
    FINGERPRINT,
    MODEL,
    NORM,
    PARENT_ROLE,
    PARENT_RUN,
    ROLE,
    SANITY_FLAGS,
    SWEEP_ID,
    WORST_CASE_ROLE,
    TrackingUnavailable,
    eps_metric_name,
)

if TYPE_CHECKING:
    from sweep.analysis.collect import ReportData
    from sweep.tracking.runs import Tracker

ARTIFACT_DIR = "curves"


@dataclass
class CurveLogReport:
    """What :func:`log_curves` did."""

    sweep_id: str = ""
    parent_run_id: str = ""
    children_logged: list[str] = field(default_factory=list)  # "model/attack"
    children_already: list[str] = field(default_factory=list)
    worst_case_runs: list[str] = field(default_factory=list)  # "model/norm"
    artifacts: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # curves with no child run found


def epsilon_steps(epsilons: pd.Series) -> dict[int, float]:
    """Step -> epsilon: the index of each epsilon in ascending order (MLflow's x axis)."""
    return dict(enumerate(sorted(float(e) for e in epsilons.unique())))


def _sweep_id(data: ReportData, sweep_id: str | None) -> str:
    if sweep_id:
        return sweep_id
    if data.provenance.sweep_id:
        return data.provenance.sweep_id
    ids = sorted(data.results["sweep_id"].astype(str).unique())
    if len(ids) != 1:
        raise ValueError(f"results hold several sweep ids {ids}; pass sweep_id")
    return ids[0]


def _curve_metrics(curve: pd.DataFrame, summary_row: Mapping[str, Any] | None, with_accuracy: bool):
    """The curve's metrics; ``with_accuracy`` adds what a child run gets from the tracker
    (``robust_accuracy`` and ``epsilon`` per step, ``robust_accuracy_eps_<eps>``,
    ``clean_accuracy``, ``samples``), so a worst-case run answers the same searches."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    steps = epsilon_steps(curve["epsilon"])
    by_eps = curve.set_index(curve["epsilon"].astype(float))
    metrics = []
    if with_accuracy:
        first = by_eps.loc[steps[0]]
        metrics.append(Metric("clean_accuracy", float(first["clean_accuracy"]), now, 0))
        metrics.append(Metric("samples", float(curve["n"].max()), now, 0))
    for step, eps in steps.items():
        row = by_eps.loc[eps]
        if with_accuracy:
            metrics.append(Metric("robust_accuracy", float(row["robust_accuracy"]), now, step))
            metrics.append(Metric(EPSILON_METRIC, float(eps), now, step))
            metrics.append(Metric(eps_metric_name(eps), float(row["robust_accuracy"]), now, 0))
        metrics.append(Metric("robust_accuracy_ci_low", float(row["ci_low"]), now, step))
        metrics.append(Metric("robust_accuracy_ci_high", float(row["ci_high"]), now, step))
    if summary_row is not None:
        metrics.append(Metric("auc", float(summary_row["auc"]), now, 0))
        mp = summary_row.get("median_min_perturbation")
        if mp is not None and not (isinstance(mp, float) and math.isnan(mp)):
            # MLflow stores floats; +inf (most samples never fooled) is kept as inf
            metrics.append(Metric("median_min_perturbation", float(mp), now, 0))
    return metrics, steps


def _fingerprint(curve: pd.DataFrame) -> str:
    cols = ["epsilon", "n", "n_robust", "clean_accuracy"]
    text = curve.sort_values("epsilon")[cols].to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Runs:
    """The sweep's runs in the writer's experiment, found by tags."""

    def __init__(self, tracker: Tracker, sweep_id: str) -> None:
        self.tracker = tracker
        self.client = tracker.client
        self.experiment_id = tracker.experiment_id
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{SWEEP_ID}` = '{sweep_id}'",
            max_results=5000,
        )
        self.parent = None
        self.children: dict[tuple[str, str], Any] = {}
        self.worst: dict[tuple[str, str], Any] = {}
        for run in runs:
            tags = run.data.tags
            role = tags.get(ROLE)
            if role == WORST_CASE_ROLE:
                self.worst[(tags.get(MODEL, ""), tags.get(NORM, ""))] = run
            elif role == PARENT_ROLE or (role is None and MODEL not in tags):
                if self.parent is None or run.info.start_time < self.parent.info.start_time:
                    self.parent = run
            elif MODEL in tags and ATTACK in tags:
                key = (tags[MODEL], tags[ATTACK])
                # several (e.g. a deleted-and-relogged child): the latest one counts
                if (
                    key not in self.children
                    or run.info.start_time > self.children[key].info.start_time
                ):
                    self.children[key] = run

    def log(self, run_id: str, metrics: list, tags: Mapping[str, str] | None = None) -> None:
        self.tracker.log_batch(run_id, metrics=metrics, tags=tags)


def log_curves(tracker: Tracker, data: ReportData, *, sweep_id: str | None = None) -> CurveLogReport:
    """Log the curves of ``data`` to its sweep's MLflow runs (module docstring).

    Args:
        tracker: the run's MLflow writer (its client and experiment).
        data: the run's analysis, from the manifest-verified files.
        sweep_id: which sweep's runs; default: the plan's, or the one in the rows.

    Raises:
        sweep.tracking.runs.TrackingUnavailable: the parent run missing, or a call
            refused. Parquet is unaffected.
    """
    report = CurveLogReport(sweep_id=_sweep_id(data, sweep_id))
    try:
        runs = _Runs(tracker, report.sweep_id)
        if runs.parent is None:
            raise TrackingUnavailable(
                f"no parent run tagged {SWEEP_ID}={report.sweep_id!r} in experiment "
                f"{tracker.experiment_id}"
            )
        report.parent_run_id = runs.parent.info.run_id
        with tempfile.TemporaryDirectory(prefix="sweep-curves-") as tmp:
            _log_all(data, runs, Path(tmp), report)
    except TrackingUnavailable:
        raise
    except Exception as exc:
        raise TrackingUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    return report


def _log_all(data: ReportData, runs: _Runs, tmp: Path, report: CurveLogReport) -> None:
    client, parent_id = runs.client, report.parent_run_id
    table, summary = data.table, data.summary
    # nothing changed since the last call (same curves, every run logged): skip the
    # figures and uploads, so a re-run or `sweep sync` with nothing new costs one search
    overall = hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()[:16]
    pairs = {(m, a) for m, a in table[["model", "attack"]].itertuples(index=False) if a != ENSEMBLE}
    current = runs.parent.data.tags.get(FINGERPRINT) == overall and all(
        runs.children[p].data.tags.get(CURVES_LOGGED) == "true" for p in pairs if p in runs.children
    )
    if current:
        report.children_already = sorted(f"{m}/{a}" for m, a in pairs if (m, a) in runs.children)
        report.missing = sorted(f"{m}/{a}" for m, a in pairs if (m, a) not in runs.children)
        return
    summary_rows = {(r["model"], r["attack"], r["norm"]): r for r in summary.to_dict("records")}
    pngs = {p.name: p for p in plots.write_pngs(table, data.results, tmp / "png")}
    all_steps: dict[str, dict[int, float]] = {}

    for (model, attack, norm), curve in table.groupby(["model", "attack", "norm"], sort=True):
        name = f"{model}/{attack}"
        model_png = pngs[f"curves_{plots.safe_name(model)}.png"]
        if attack == ENSEMBLE:
            if "+" not in str(curve["attacks"].iloc[-1]):
                # one attack in this norm: its worst case is that attack's curve,
                # which its child run already holds; a second run would duplicate it
                continue
            run_id = _worst_case_run(runs, model, norm, curve, parent_id)
            if run_id is None:  # logged before, and the curve has not changed
                all_steps[f"{model}/{attack}/{norm}"] = epsilon_steps(curve["epsilon"])
                report.children_already.append(f"{model}/{ENSEMBLE}/{norm}")
                continue
            metrics, steps = _curve_metrics(curve, summary_rows.get((model, attack, norm)), True)
            runs.log(run_id, metrics, {CURVES_LOGGED: "true"})
            client.set_terminated(run_id, status="FINISHED")
            report.worst_case_runs.append(f"{model}/{norm}")
        else:
            run = runs.children.get((model, attack))
            if run is None:
                report.missing.append(name)
                continue
            run_id = run.info.run_id
            steps = epsilon_steps(curve["epsilon"])
            if run.data.tags.get(CURVES_LOGGED) == "true":
                report.children_already.append(name)
            else:
                has_accuracy = bool(client.get_metric_history(run_id, "robust_accuracy"))
                metrics, steps = _curve_metrics(
                    curve, summary_rows.get((model, attack, norm)), not has_accuracy
                )
                runs.log(run_id, metrics, {CURVES_LOGGED: "true", EPSILON_STEPS: json.dumps(steps)})
                report.children_logged.append(name)
        all_steps[f"{model}/{attack}/{norm}"] = steps
        steps_file = tmp / "steps" / run_id / "epsilon_steps.json"
        steps_file.parent.mkdir(parents=True, exist_ok=True)
        steps_file.write_text(
            json.dumps({"metric": "robust_accuracy", "norm": norm, "steps": steps})
        )
        client.log_artifact(run_id, str(steps_file), ARTIFACT_DIR)
        client.log_artifact(run_id, str(model_png), ARTIFACT_DIR)

    # the parent: every figure and table, and the step -> epsilon map of every curve
    tables = tmp / "tables"
    tables.mkdir()
    table.to_csv(tables / "curves.csv", index=False)
    summary.to_csv(tables / "summary.csv", index=False)
    flags = flags_frame(data.flags)
    (tables / "sanity_flags.json").write_text(
        json.dumps([f.to_dict() for f in data.flags], indent=1, default=str)
    )
    (tables / "epsilon_steps.json").write_text(json.dumps(all_steps, indent=1))
    for path in [*pngs.values(), *sorted(tables.iterdir())]:
        client.log_artifact(parent_id, str(path), ARTIFACT_DIR)
        report.artifacts.append(f"{ARTIFACT_DIR}/{path.name}")
    runs.log(parent_id, [], {SANITY_FLAGS: str(len(flags)), FINGERPRINT: overall})


def _worst_case_run(
    runs: _Runs, model: str, norm: str, curve: pd.DataFrame, parent_id: str
) -> str | None:
    """A fresh worst-case run for (model, norm), or ``None`` if the logged one is current."""
    fingerprint = _fingerprint(curve)
    old = runs.worst.get((model, norm))
    if old is not None:
        if old.data.tags.get(FINGERPRINT) == fingerprint and old.data.tags.get(CURVES_LOGGED) == "true":
            return None
        runs.client.delete_run(old.info.run_id)  # never append points to a changed curve
    steps = epsilon_steps(curve["epsilon"])
    sweep_id = runs.parent.data.tags.get(SWEEP_ID, "") if runs.parent is not None else ""
    tags = {
        SWEEP_ID: sweep_id,
        ROLE: WORST_CASE_ROLE,
        MODEL: model,
        ATTACK: ENSEMBLE,
        NORM: norm,
        PARENT_RUN: parent_id,
        FINGERPRINT: fingerprint,
        EPSILON_STEPS: json.dumps(steps),
        ATTACKS: str(curve["attacks"].iloc[-1]),
    }
    run = runs.client.create_run(
        runs.experiment_id, tags=tags, run_name=f"{model}/worst-case ({norm})"
    )
    runs.tracker.log_batch(
        run.info.run_id, params={"epsilons": json.dumps(list(steps.values())), "norm": norm}
    )
    return run.info.run_id
