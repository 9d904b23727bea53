"""MLflow tracking, from the driver only, batched, idempotent: the one MLflow writer.

:class:`Tracker` holds the one client of a run (or of ``sweep sync``) and logs
everything: the parent run, a child run per model x attack, and, through
:mod:`sweep.tracking.curves`, the worst-case runs and curve artifacts
(:meth:`Tracker.log_results` does all of it after the run, from the analysis the
pipeline built once from the manifest-verified files). Every tag name, role and
batch limit is defined once, in the "MLflow names" block below.

Layout (``docs/sweep.md``, "MLflow"):

- one **experiment** per sweep name (``mlflow.experiment`` overrides);
- one **parent run** per sweep id (tags ``sweep.sweep_id``, ``sweep.role=parent``):
  the spec flattened into params, the spec file as an artifact, the package
  versions the plan recorded at run time and the git commit as tags;
- one **child run** per model x attack (tags ``sweep.sweep_id``, ``sweep.model``,
  ``sweep.attack``, ``sweep.role=child``, ``mlflow.parentRunId``), logged once
  all of the pair's cells are done: ``clean_accuracy``, ``robust_accuracy`` with
  step = epsilon index (ascending epsilons; the mapping is the tag
  ``sweep.epsilon_steps`` and param ``epsilons``), ``epsilon`` at the same steps
  (its value is the step's epsilon: the chart's x-axis), ``robust_accuracy_eps_<eps>``
  per epsilon, ``samples`` and ``cells``; a targeted attack also
  ``targeted_success_rate`` (same steps) and ``targeted_success_rate_eps_<eps>``. Its metrics go in ``log_batch`` calls of
  at most 1000 metrics and 100 params + tags (MLflow's limits), then the tag
  ``sweep.complete=true`` is set.

Idempotence: runs are found by their tags, never created twice. A child tagged
complete is skipped (re-logging a metric in MLflow appends a point, it does not
overwrite); a child left incomplete (logging died halfway) is deleted and logged
again. So a re-run, a resumed run and ``sweep sync`` never duplicate runs or points.

Every number logged is computed from the Parquet rows (the verified files of the
manifest), never from driver memory, so ``sweep sync OUTPUT`` can rebuild it all.
Logging goes from the driver only: many writers on one SQLite store lock it, and
1000 workers on a tracking server would be a denial of service.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sweep.results.plan import PACKAGES, Plan, PlanPair

# -- MLflow names: every tag, role and limit of the sweep's runs, for this module,
#    sweep.tracking.curves and the report's run links ------------------------------------
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limits
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VALUE = 6000  # MLflow's param value length limit
MAX_FLAT_PARAMS = 400  # beyond this, the parent gets one JSON param per top-level key
SWEEP_ID, ROLE, MODEL, ATTACK, NORM = (
    "sweep.sweep_id", "sweep.role", "sweep.model", "sweep.attack", "sweep.norm")
PARENT_ROLE, CHILD_ROLE, WORST_CASE_ROLE = "parent", "child", "worst-case"
PARENT_RUN = "mlflow.parentRunId"
GIT_COMMIT = "mlflow.source.git.commit"
NAME, OUTPUT, ATTACKS = "sweep.name", "sweep.output", "sweep.attacks"
VERSION_PREFIX = "sweep.version."  # + package name (sweep.results.plan.PACKAGES)
PARAMS_LOGGED = "sweep.params_logged"
COMPLETE = "sweep.complete"  # a child (or the parent: every cell) fully logged
CELLS_DONE, CELLS_TOTAL = "sweep.cells_done", "sweep.cells_total"
EPSILON_STEPS = "sweep.epsilon_steps"  # JSON step -> epsilon of a run's curves
CURVES_LOGGED = "sweep.curves_logged"  # the curve metrics are in (sweep.tracking.curves)
FINGERPRINT = "sweep.curves_fingerprint"  # of the curves logged (parent, worst case)
SANITY_FLAGS = "sweep.sanity_flags"
GALLERY_DIR = "gallery"  # a child run's adversarial gallery PNG (Tracker.gallery)


EPSILON_METRIC = "epsilon"
"""Logged at every step beside ``robust_accuracy``: its value is that step's epsilon,
so the MLflow chart can use it as the x-axis ("X-axis: Metric -> epsilon")."""


def eps_metric_name(eps: float) -> str:
    """``robust_accuracy_eps_0.1``: one named metric per epsilon, for searches such as
    ``metrics.robust_accuracy_eps_0.1 > 0.8`` (``repr`` keeps 8/255 exact)."""
    return f"robust_accuracy_eps_{float(eps)!r}"


class TrackingUnavailable(RuntimeError):
    """MLflow could not be reached or refused a call; Parquet still has every row."""


@dataclass
class SyncReport:
    """What :meth:`Tracker.children` (and :meth:`Tracker.log_results`) did."""

    parent_run_id: str = ""
    experiment_id: str = ""
    logged: list[str] = field(default_factory=list)  # "model/attack" children created now
    already: list[str] = field(default_factory=list)  # children complete before
    waiting: list[str] = field(default_factory=list)  # pairs with cells still missing
    curves: Any = None  # sweep.tracking.curves.CurveLogReport, once the curves are logged
    curves_error: str | None = None  # why they were not (the runs themselves are logged)
    gallery: list[str] = field(default_factory=list)  # "model/attack" children given a gallery PNG


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a local SQLite store (for the
    default, ``<output>/_mlflow/artifacts``); a server decides itself."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "artifacts").as_uri()
    return None


def ui_command(tracking_uri: str, mlflow: str = "mlflow") -> str:
    """The command that shows this store in the MLflow UI (``mlflow``: how to call it).

    One worker: the UI's default of four worker processes, each importing MLflow,
    took about a minute to answer on a loaded 2-CPU machine, for one viewer."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"{mlflow} ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --workers 1"


class Tracker:
    """An MLflow client for one experiment; every failure becomes :class:`TrackingUnavailable`."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        # fail in seconds, not minutes, when a server is down (MLflow's defaults
        # retry 7 times with exponential backoff and wait 120 s per request)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self.uri = tracking_uri
        if tracking_uri.startswith(("http://", "https://")):
            _check_server(tracking_uri)
        elif tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.experiment_id = self._experiment(experiment)
        except TrackingUnavailable:
            raise
        except Exception as exc:
            raise TrackingUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(
                    name, artifact_location=artifact_location(self.uri)
                )
            except Exception:  # created meanwhile by someone else: use theirs
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def _find(self, tags: Mapping[str, str]) -> list[Any]:
        flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        return list(self.client.search_runs([self.experiment_id], filter_string=flt, max_results=1000))

    # -- parent --------------------------------------------------------------------------
    def parent(self, plan: Plan, spec_text: str) -> str:
        """The sweep's parent run (created once, with params, versions and the spec)."""
        try:
            found = self._find({SWEEP_ID: plan.sweep_id, ROLE: PARENT_ROLE})
            if found:
                run_id = found[0].info.run_id
                self.client.update_run(run_id, status="RUNNING")
                if found[0].data.tags.get(PARAMS_LOGGED) == "true":
                    return run_id
            else:
                tags = {SWEEP_ID: plan.sweep_id, ROLE: PARENT_ROLE, NAME: plan.name,
                        OUTPUT: plan.output, **_version_tags(plan)}
                run_id = self.client.create_run(self.experiment_id, tags=tags, run_name=plan.name).info.run_id
            self.log_batch(run_id, params=_flatten_params(plan.spec))
            if spec_text:
                self.client.log_text(run_id, spec_text, "spec.yaml")
            self.client.log_text(run_id, json.dumps(plan.spec, indent=1), "spec.resolved.json")
            self.client.set_tag(run_id, PARAMS_LOGGED, "true")
            return run_id
        except Exception as exc:
            raise TrackingUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc

    def finish(self, run_id: str, *, cells_done: int, cells_total: int, failed: int) -> None:
        try:
            status = "FINISHED" if cells_done == cells_total else ("FAILED" if failed else "RUNNING")
            self.log_batch(run_id, tags={CELLS_DONE: str(cells_done), CELLS_TOTAL: str(cells_total),
                                         COMPLETE: str(cells_done == cells_total).lower()})
            if status == "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            else:
                self.client.set_terminated(run_id, status=status)
        except Exception as exc:
            raise TrackingUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc

    def killed(self, run_id: str) -> None:
        """Mark the parent run KILLED (the sweep was interrupted); best effort, never raises:
        the user is already leaving, and Parquet holds every finished cell."""
        with contextlib.suppress(Exception):
            self.client.set_terminated(run_id, status="KILLED")

    # -- after the run: children, then the curves ------------------------------------------
    def log_results(self, plan: Plan, parent_id: str, data: Any, done: set[str], *,
                    replace: bool = False, failed: int = 0) -> SyncReport:
        """Everything MLflow gets after the cells: a child run per finished model x attack
        (:meth:`children`), the parent's status (:meth:`finish`), then the worst-case runs
        and curve artifacts (:meth:`curves`).

        ``data`` is the run's analysis (:class:`sweep.analysis.collect.ReportData`, built once
        from the manifest-verified files ``done``), ``None`` when no cell is done. A
        failure of the curves alone is ``curves_error`` in the report: the runs are logged.

        Raises:
            TrackingUnavailable: MLflow refused the children or the parent's status.
        """
        rows = data.results if data is not None else pd.DataFrame()
        report = self.children(plan, parent_id, rows, done, replace=replace)
        self.finish(parent_id, cells_done=len(done), cells_total=len(plan.cell_ids()), failed=failed)
        if data is not None:
            try:
                report.curves = self.curves(data, sweep_id=plan.sweep_id)
                report.gallery = self.gallery(data, sweep_id=plan.sweep_id)
            except TrackingUnavailable as exc:
                report.curves_error = str(exc)
        return report

    def gallery(self, data: Any, *, sweep_id: str) -> list[str]:
        """The adversarial gallery (:mod:`sweep.analysis.gallery`): one PNG per model x
        attack with stored adversarials, logged as ``gallery/<model>__<attack>.png`` on
        that pair's child run (overwritten on a re-run); returns the pairs logged."""
        from sweep.analysis.gallery import panels
        from sweep.analysis.plots import safe_name

        found = panels(data.output) if getattr(data, "output", "") else []
        if not found:
            return []
        logged = []
        try:
            children = {(r.data.tags.get(MODEL, ""), r.data.tags.get(ATTACK, "")): r.info.run_id
                        for r in self._find({SWEEP_ID: sweep_id, ROLE: CHILD_ROLE})}
            with tempfile.TemporaryDirectory(prefix="sweep-gallery-") as tmp:
                for panel in found:
                    run_id = children.get((panel.model, panel.attack))
                    if run_id is None:
                        continue
                    path = Path(tmp) / f"{safe_name(panel.model)}__{safe_name(panel.attack)}.png"
                    path.write_bytes(panel.png)
                    self.client.log_artifact(run_id, str(path), GALLERY_DIR)
                    logged.append(f"{panel.model}/{panel.attack}")
        except Exception as exc:
            raise TrackingUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
        return logged

    def curves(self, data: Any, *, sweep_id: str | None = None) -> Any:
        """The worst-case runs and curve artifacts of ``data`` (a
        :class:`~sweep.analysis.collect.ReportData`); see :func:`sweep.tracking.curves.log_curves`."""
        from sweep.tracking.curves import log_curves

        return log_curves(self, data, sweep_id=sweep_id)

    def children(
        self,
        plan: Plan,
        parent_id: str,
        rows: pd.DataFrame,
        done: set[str],
        *,
        replace: bool = False,
    ) -> SyncReport:
        """Log a child run per model x attack whose cells are all ``done``; see module doc."""
        report = SyncReport(parent_run_id=parent_id, experiment_id=self.experiment_id)
        try:
            existing: dict[tuple[str, str], list[Any]] = {}
            for run in self._find({SWEEP_ID: plan.sweep_id, ROLE: CHILD_ROLE}):
                t = run.data.tags
                existing.setdefault((t.get(MODEL, ""), t.get(ATTACK, "")), []).append(run)
            groups = dict(tuple(rows.groupby(["model", "attack"], observed=True))) if len(rows) else {}
            for pair in plan.pairs:
                key = (pair.model, pair.attack)
                name = f"{key[0]}/{key[1]}"
                if not all(c in done for c in pair.cells):
                    report.waiting.append(name)
                    continue
                runs = existing.get(key, [])
                if not replace and any(r.data.tags.get(COMPLETE) == "true" for r in runs):
                    report.already.append(name)
                    continue
                for r in runs:  # incomplete (or replaced): start over, never append
                    self.client.delete_run(r.info.run_id)
                self._log_child(plan, parent_id, pair, groups.get(key, rows.iloc[0:0]))
                report.logged.append(name)
        except Exception as exc:
            raise TrackingUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
        return report

    def _log_child(self, plan: Plan, parent_id: str, pair: PlanPair, rows: pd.DataFrame) -> None:
        metrics = pair_metrics(rows, pair.epsilons)
        steps = sorted(pair.epsilons)
        tags = {
            SWEEP_ID: plan.sweep_id, ROLE: CHILD_ROLE, MODEL: pair.model,
            ATTACK: pair.attack, PARENT_RUN: parent_id,
            EPSILON_STEPS: json.dumps(dict(enumerate(steps))),
        }
        run_id = self.client.create_run(
            self.experiment_id, tags=tags, run_name=f"{pair.model}/{pair.attack}"
        ).info.run_id
        targeted = None if pair.targeted is None else dict(pair.targeted)
        params = {
            "model": pair.model, "attack": pair.attack, "attack_name": pair.attack_name,
            "norm": pair.norm, "kind": pair.kind, "strategy": pair.strategy,
            "targeted": json.dumps(targeted), "epsilons": json.dumps(steps),
            "model_entry": json.dumps(dict(pair.model_entry), sort_keys=True),
            **{f"attack.{k}": _param_value(v) for k, v in sorted(pair.params.items())},
        }
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric("clean_accuracy", metrics["clean_accuracy"], now, 0),
                 Metric("samples", float(metrics["samples"]), now, 0),
                 Metric("cells", float(len(pair.cells)), now, 0)]
        for step, eps in enumerate(steps):
            acc = metrics["robust_accuracy"].get(eps, float("nan"))
            batch.append(Metric("robust_accuracy", acc, now, step))
            batch.append(Metric(EPSILON_METRIC, float(eps), now, step))
            batch.append(Metric(eps_metric_name(eps), acc, now, 0))
            if eps in metrics["targeted_success_rate"]:
                rate = metrics["targeted_success_rate"][eps]
                batch.append(Metric("targeted_success_rate", rate, now, step))
                batch.append(Metric(f"targeted_success_rate_eps_{eps!r}", rate, now, 0))
        self.log_batch(run_id, metrics=batch, params=params)
        self.client.set_tag(run_id, COMPLETE, "true")
        self.client.set_terminated(run_id, status="FINISHED")

    def log_batch(self, run_id: str, *, metrics: Sequence[Any] = (),
                  params: Mapping[str, str] | None = None,
                  tags: Mapping[str, str] | None = None) -> None:
        """``log_batch`` within MLflow's per-call limits (metrics first, then params and tags)."""
        from mlflow.entities import Param, RunTag

        for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=list(metrics[i : i + MAX_METRICS_PER_BATCH]))
        small = [Param(k, v) for k, v in (params or {}).items()]
        small += [RunTag(k, v) for k, v in (tags or {}).items()]
        for i in range(0, len(small), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = small[i : i + MAX_PARAMS_TAGS_PER_BATCH]
            self.client.log_batch(
                run_id,
                params=[p for p in chunk if isinstance(p, Param)],
                tags=[t for t in chunk if isinstance(t, RunTag)],
            )


def pair_metrics(rows: pd.DataFrame, epsilons: Iterable[float]) -> dict[str, Any]:
    """Clean and robust accuracy of one model x attack from its Parquet rows.

    Robust accuracy at eps = mean of ``robust`` over the pair's samples (clean
    errors count as not robust); clean accuracy = mean of ``clean_correct`` over
    its samples (each counted once). For a targeted attack (``target >= 0``), the
    targeted success rate at eps = of the samples correct on the clean image, the
    share whose adversarial hit the target (empty for untargeted attacks).
    """
    if rows.empty:
        return {"clean_accuracy": float("nan"), "samples": 0,
                "robust_accuracy": dict.fromkeys(epsilons, float("nan")),
                "targeted_success_rate": {}}
    per_sample = rows.drop_duplicates(["cell_id", "sample_id"])
    robust = rows.groupby("epsilon")["robust"].mean()
    targeted = rows[(rows["target"] >= 0) & rows["clean_correct"].astype(bool)]
    hit = targeted.groupby("epsilon")["success"].mean()
    return {
        "clean_accuracy": float(per_sample["clean_correct"].mean()),
        "samples": len(per_sample),
        "robust_accuracy": {float(e): float(v) for e, v in robust.items()},
        "targeted_success_rate": {float(e): float(v) for e, v in hit.items()},
    }


def _check_server(uri: str) -> None:
    """A tracking server answers ``/health`` within seconds, or is unavailable."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as resp:
            if resp.status != 200:
                raise TrackingUnavailable(f"{uri}/health answered HTTP {resp.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingUnavailable(f"cannot reach {uri}: {getattr(exc, 'reason', exc)}") from exc


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_VALUE]


def _flatten_params(spec: Mapping[str, Any]) -> dict[str, str]:
    """``{"dataset.name": "digits", "models.0.name": ..., ...}``; one JSON per key if huge."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list) and value and any(isinstance(v, Mapping | list) for v in value):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        else:
            flat[prefix[:250]] = _param_value(value)

    walk("", spec)
    if len(flat) > MAX_FLAT_PARAMS:
        flat = {str(k)[:250]: _param_value(v) for k, v in spec.items()}
    return flat


def _version_tags(plan: Plan) -> dict[str, str]:
    """``sweep.version.<package>`` of the packages the plan recorded at run time (none for
    a plan that recorded none), and the git commit of the current folder."""
    tags = {f"{VERSION_PREFIX}{p}": plan.versions[p] for p in PACKAGES if p in plan.versions}
    sha = _git_sha()
    if sha:
        tags[GIT_COMMIT] = sha
    return tags


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
