"""A sweep from spec to results: validate -> grid -> driver -> manifest -> MLflow.

The Python API behind ``sweep validate / plan / run / sync`` (and the Ray Jobs
entrypoints): the CLI modules only parse options and print.

Order matters for "nothing happens on bad input": :func:`prepare` parses the spec,
loads the dataset, probes every model and expands the grid without writing a byte
or starting Ray; only :func:`run_sweep` creates the output folder.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sweep import store
from sweep.adoption import adopt_orphans
from sweep.config import SweepSpec, load_spec
from sweep.grid import Cell, DataLayout, expand, sweep_id
from sweep.lease import hold_output
from sweep.manifest import QUARANTINE_DIR, Manifest
from sweep.progress import SweepProgress
from sweep.run.dispatcher import CellFailure, DriverResult, run_cells
from sweep.run.placement import joined
from sweep.run.pool import WorkerPool
from sweep.schema import SCHEMA_VERSION

Echo = Callable[[str], None]

# columns the end-of-run summaries read (never the whole rows)
SUMMARY_COLUMNS = [
    "cell_id", "model", "attack", "norm", "epsilon", "sample_id", "clean_correct", "robust",
    # for the targeted success rate, and to read version-1 rows (schema.upgrade_rows)
    "success", "target", "label", "adv_pred", "perturbation", "schema_version",
]  # fmt: skip


@dataclass(frozen=True)
class Prepared:
    """A validated spec and its grid: everything a run needs, nothing written yet."""

    spec: SweepSpec
    layout: DataLayout
    cells: list[Cell]
    sweep_id: str
    # per model, what the field's model checks found (sweep.models.checks): warnings
    model_checks: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class RunOutcome:
    prepared: Prepared
    already_done: int = 0
    driver: DriverResult = field(default_factory=DriverResult)
    adopted: list[str] = field(default_factory=list)  # whole files of a killed run (sweep.adoption)
    quarantined: list[str] = field(default_factory=list)
    cells_done: int = 0  # verified at the end, this spec's cells
    tracking_error: str | None = None
    tracking_report: Any = None
    seconds: float = 0.0

    @property
    def failures(self) -> list[CellFailure]:
        return self.driver.failures


def prepare(spec_path: str | os.PathLike[str], *, probe_models: bool = True) -> Prepared:
    """Parse, validate and expand a spec; raises :class:`~sweep.errors.SpecError`."""
    from sweep.inputs import check_inputs

    # `module:function` factories are imported from the current folder, as `python -m` would
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    spec = load_spec(spec_path)
    layout, model_checks = check_inputs(spec, probe_models=probe_models)
    cells = expand(spec, layout)
    return Prepared(spec=spec, layout=layout, cells=cells, sweep_id=sweep_id(cells),
                    model_checks=model_checks)


def model_check_lines(prep: Prepared) -> list[str]:
    """One warning line per model check that fired, naming the model."""
    return [
        f"warning: model {name!r}: {f.code}: {f.message}"
        for name, found in prep.model_checks.items()
        for f in found
    ]


def plan_record(prep: Prepared) -> dict[str, Any]:
    """What ``_manifest/plan.json`` holds: enough for ``sweep sync`` without the spec's inputs."""
    spec = prep.spec
    by_pair: dict[tuple[str, str], list[str]] = {}
    for c in prep.cells:
        by_pair.setdefault((c.model, c.attack), []).append(c.cell_id)
    pairs = []
    for m in spec.models:
        for a in spec.attacks:
            pairs.append({
                "model": m.name, "attack": a.label, "attack_name": a.name, "norm": a.norm,
                "kind": a.kind, "strategy": a.strategy, "epsilons": list(a.epsilons),
                "params": a.params, "model_entry": m.entry,
                "targeted": None if a.targeted is None else {"mode": a.targeted.mode,
                                                              "targets": list(a.targeted.targets)},
                "cells": by_pair.get((m.name, a.label), []),
            })
    return {
        "schema_version": SCHEMA_VERSION,
        "sweep_id": prep.sweep_id,
        "name": spec.name,
        "output": str(spec.output),
        "mlflow_enabled": spec.mlflow.enabled,
        "tracking_uri": spec.tracking_uri(),
        "experiment": spec.experiment,
        "samples": prep.layout.num_samples,
        "cells_total": len(prep.cells),
        "created": time.time(),
        "spec": spec.raw,
        "pairs": pairs,
        "model_checks": {m: [f.to_dict() for f in found] for m, found in prep.model_checks.items()},
    }


def run_sweep(
    prep: Prepared,
    *,
    fresh: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    echo: Echo = print,
    pool: WorkerPool | None = None,
) -> RunOutcome:
    """Compute the cells not done yet, then log MLflow; see the module docstring.

    The cells run on ``pool`` when given (its workers may have served earlier runs
    and stay for later ones; its own connection is used), else on a
    :class:`~sweep.run.pool.WorkerPool` made for this run and closed at its end.

    A cluster (``address``, or Ray already running) is joined first, and a cell shape
    that none of its nodes, live or launchable, could hold is refused before anything
    is written (:func:`sweep.run.placement.joined`). Then the output's lease
    (:mod:`sweep.lease`) is held throughout: a second run on the same output is a
    :class:`~sweep.errors.SpecError` naming the holder, before it touches anything.
    """
    with joined(prep.spec, address):
        store.ensure_output(prep.spec.output)
        with hold_output(prep.spec.output, echo):
            return _run_held(prep, fresh=fresh, address=address, num_cpus=num_cpus,
                             progress=progress, echo=echo, pool=pool)


def _run_held(
    prep: Prepared,
    *,
    fresh: bool,
    address: str | None,
    num_cpus: int | None,
    progress: bool,
    echo: Echo,
    pool: WorkerPool | None,
) -> RunOutcome:
    t0 = time.perf_counter()
    spec, cells = prep.spec, prep.cells
    out = RunOutcome(prepared=prep)
    manifest = Manifest(spec.output)
    store.remove_temp_files(spec.output)
    if not fresh:
        targeted = frozenset(a.label for a in spec.attacks if a.targeted is not None)
        out.adopted = adopt_orphans(manifest, cells, targeted=targeted)
        if out.adopted:
            echo(f"adopted {len(out.adopted)} whole result file(s) written after their run's "
                 "driver stopped (checked cell by cell; not recomputed)")
    out.quarantined = manifest.quarantine_unverified()
    if out.quarantined:
        echo(f"moved {len(out.quarantined)} result file(s) the manifest does not vouch for "
             f"to {store.location(spec.output, QUARANTINE_DIR)}")
    if fresh:
        manifest.reset()
    plan = plan_record(prep)
    manifest.write_plan(plan, spec.text)
    done = {} if fresh else manifest.verified(c.cell_id for c in cells)
    todo = [c for c in cells if c.cell_id not in done]
    out.already_done = len(done)
    if fresh:
        echo(f"{len(cells)} cells (--fresh: recomputing all)")
    elif done:
        echo(f"{len(cells)} cells: {len(done)} already done, computing {len(todo)}")
    else:
        echo(f"{len(cells)} cells to compute")

    tracker, parent_id = None, None
    if spec.mlflow.enabled:
        tracker, parent_id, out.tracking_error = _start_tracking(spec, plan)

    if todo:  # Ray takes 10-30 s to start on a small machine: say so rather than go quiet
        echo("starting Ray workers" + (f" on {address}" if address else " (local Ray instance)"))
    try:
        with (SweepProgress(total=len(cells), done=len(done), enabled=progress) as bar,
              contextlib.nullcontext(pool) if pool else WorkerPool(address, num_cpus) as workers):
            out.driver = run_cells(
                spec, prep.layout, prep.sweep_id, todo, manifest, workers,
                on_cell=lambda samples, failed: bar.advance(samples, failed=failed),
                on_pool=bar.pool,
            )
    except KeyboardInterrupt:
        # Ctrl-C: the parent run must not stay RUNNING forever; a re-run resumes
        # the cells and sets it RUNNING again (Tracker.parent)
        if tracker is not None and parent_id is not None:
            tracker.killed(parent_id)
        raise
    finally:
        manifest.close()
    verified = manifest.verified(c.cell_id for c in cells)
    out.cells_done = len(verified)
    if tracker is not None and parent_id is not None:
        from sweep.tracking import TrackingUnavailable

        try:
            rows = read_rows(spec.output, [r.file for r in verified.values()])
            out.tracking_report = tracker.children(plan, parent_id, rows, set(verified), replace=fresh)
            tracker.finish(parent_id, cells_done=len(verified), cells_total=len(cells),
                           failed=len(out.failures))
        except TrackingUnavailable as exc:
            out.tracking_error = str(exc)
    out.seconds = time.perf_counter() - t0
    return out


def _start_tracking(spec: SweepSpec, plan: dict[str, Any]) -> tuple[Any, str | None, str | None]:
    from sweep.tracking import Tracker, TrackingUnavailable

    try:
        tracker = Tracker(spec.tracking_uri(), spec.experiment)
        return tracker, tracker.parent(plan, spec.text), None
    except TrackingUnavailable as exc:
        return None, None, str(exc)


def read_rows(output: store.Output, files: Sequence[str], columns: Iterable[str] = SUMMARY_COLUMNS) -> pd.DataFrame:
    """The given result files as one DataFrame (only ``columns``); rows of an older
    schema version read as the current one when ``columns`` allow it
    (:func:`sweep.schema.upgrade_rows`)."""
    from sweep.schema import upgrade_rows

    if not files:
        return pd.DataFrame(columns=list(columns))
    rows = store.open_results(output, files).to_table(columns=list(columns)).to_pandas()
    if set(SUMMARY_COLUMNS) <= set(rows.columns):
        rows, _ = upgrade_rows(rows)
    return rows


def sync_tracking(
    output: store.Output, *, tracking_uri: str | None = None, replace: bool = False
) -> Any:
    """Backfill MLflow from the Parquet results of ``output`` (``sweep sync``)."""
    from sweep.errors import SpecError
    from sweep.tracking import Tracker

    manifest = Manifest(output)
    plan = manifest.read_plan()
    if plan is None:
        raise SpecError("OUTPUT", str(output), "has no _manifest/plan.json: is it a sweep output folder?")
    uri = tracking_uri or plan.get("tracking_uri")
    if not uri:
        raise SpecError(
            "--tracking-uri", None,
            "is required: this sweep ran with MLflow off and its output is an object store, "
            "so it has no default store; give an http(s):// server or sqlite:////path/mlflow.db",
        )  # fmt: skip
    spec_text = manifest.read_spec_text()
    tracker = Tracker(uri, plan["experiment"])
    parent_id = tracker.parent(plan, spec_text)
    ids = [c for p in plan["pairs"] for c in p["cells"]]
    verified = manifest.verified(ids)
    rows = read_rows(output, [r.file for r in verified.values()])
    report = tracker.children(plan, parent_id, rows, set(verified), replace=replace)
    tracker.finish(parent_id, cells_done=len(verified), cells_total=len(ids), failed=0)
    return report
