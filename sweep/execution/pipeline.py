"""A sweep from spec to results: validate -> grid -> driver -> manifest -> analysis -> MLflow.

The Python API behind ``sweep validate / plan / run / sync`` (and the Ray Jobs
entrypoints): the CLI modules only parse options and print.

Order matters for "nothing happens on bad input": :func:`prepare` parses the spec,
loads the dataset, probes every model and expands the grid without writing a byte
or starting Ray; only :func:`run_sweep` creates the output folder.

After the cells, one path: the analysis (curves, summary, sanity flags:
:class:`sweep.analysis.collect.ReportData`) is built once from the files the manifest
vouches for, never from whatever else lies in the folder; the one MLflow writer
(:class:`sweep.tracking.runs.Tracker`) logs the children, the parent's status, the
worst-case runs and the curve artifacts from it; :class:`RunOutcome` carries it to
the CLI, which only prints. ``sweep sync`` takes the same path without the cells.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweep.execution.dispatcher import CellFailure, DriverResult, run_cells
from sweep.execution.lease import hold_output
from sweep.execution.placement import joined
from sweep.results import store
from sweep.results.manifest import QUARANTINE_DIR, Manifest
from sweep.results.plan import Plan, PlanPair, package_versions
from sweep.results.schema import SCHEMA_VERSION
from sweep.spec.config import SweepSpec, load_spec
from sweep.spec.grid import Cell, DataLayout, TransferUnit, expand, sweep_id, transfer_units

if TYPE_CHECKING:  # torch (through the worker): imported where a run needs it, not by `sweep plan`
    from sweep.execution.pool import WorkerPool

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """A validated spec and its grid: everything a run needs, nothing written yet."""

    spec: SweepSpec
    layout: DataLayout
    cells: list[Cell]
    sweep_id: str
    # per model, what the field's model checks found (sweep.models.checks): warnings
    model_checks: dict[str, list[Any]] = field(default_factory=dict)
    transfers: list[TransferUnit] = field(default_factory=list)  # `transfer:` evaluations


@dataclass
class RunOutcome:
    prepared: Prepared
    already_done: int = 0
    driver: DriverResult = field(default_factory=DriverResult)
    adopted: list[str] = field(default_factory=list)  # whole files of a killed run (sweep.execution.adoption)
    quarantined: list[str] = field(default_factory=list)
    cells_done: int = 0  # verified at the end, this spec's cells
    # curves, summary and flags of the verified files (sweep.analysis.collect.ReportData),
    # None when no cell is done (analysis_error says why)
    analysis: Any = None
    analysis_error: str | None = None
    tracking_error: str | None = None  # MLflow unreachable: nothing after it was logged
    tracking_report: Any = None  # sweep.tracking.runs.SyncReport (its curves_error: curves only)
    seconds: float = 0.0

    @property
    def failures(self) -> list[CellFailure]:
        return self.driver.failures


def prepare(spec_path: str | os.PathLike[str], *, probe_models: bool = True) -> Prepared:
    """Parse, validate and expand a spec; raises :class:`~sweep.errors.SpecError`."""
    return prepare_spec(load_spec(spec_path), probe_models=probe_models)


def _factories_from_cwd() -> None:
    """`module:function` factories are imported from the current folder, as `python -m` would."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def prepare_spec(spec: SweepSpec, *, probe_models: bool = True) -> Prepared:
    """:func:`prepare` for a spec already validated (``sweep.run`` with a dict or YAML
    text): loads and checks its inputs, expands the grid; nothing is written."""
    from sweep.spec.inputs import check_inputs

    _factories_from_cwd()
    layout, model_checks = check_inputs(spec, probe_models=probe_models)
    cells = expand(spec, layout)
    return Prepared(spec=spec, layout=layout, cells=cells, sweep_id=sweep_id(cells),
                    model_checks=model_checks, transfers=transfer_units(spec, cells))


def model_check_lines(prep: Prepared) -> list[str]:
    """One warning line per model check that fired, naming the model."""
    return [
        f"warning: model {name!r}: {f.code}: {f.message}"
        for name, found in prep.model_checks.items()
        for f in found
    ]


def plan_record(prep: Prepared) -> Plan:
    """What ``_manifest/plan.json`` holds: enough for ``sweep sync`` and the report
    without the spec's inputs, and the versions of the packages running this sweep."""
    spec = prep.spec
    by_pair: dict[tuple[str, str], list[str]] = {}
    for c in prep.cells:
        by_pair.setdefault((c.model, c.attack), []).append(c.cell_id)
    pairs = [
        PlanPair(
            model=m.name, attack=a.label, attack_name=a.name, norm=a.norm, kind=a.kind,
            strategy=a.strategy, epsilons=tuple(a.epsilons), params=a.params, model_entry=m.entry,
            targeted=None if a.targeted is None else {"mode": a.targeted.mode,
                                                      "targets": list(a.targeted.targets)},
            cells=tuple(by_pair.get((m.name, a.label), [])),
        )
        for m in spec.models
        for a in spec.attacks
    ]  # fmt: skip
    return Plan(
        schema_version=SCHEMA_VERSION,
        sweep_id=prep.sweep_id,
        name=spec.name,
        output=str(spec.output),
        mlflow_enabled=spec.mlflow.enabled,
        tracking_uri=spec.tracking_uri(),
        experiment=spec.experiment,
        samples=prep.layout.num_samples,
        cells_total=len(prep.cells),
        created=time.time(),
        spec=spec.raw,
        pairs=tuple(pairs),
        model_checks={m: [f.to_dict() for f in found] for m, found in prep.model_checks.items()},
        versions=package_versions(),
        transfers=tuple({"id": u.cell_id, "source": u.source, "target": u.model, "attack": u.attack,
                         "source_cell": u.source_cell} for u in prep.transfers),
    )


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
    :class:`~sweep.execution.pool.WorkerPool` made for this run and closed at its end.

    A cluster (``address``, or Ray already running) is joined first, and a cell shape
    that none of its nodes, live or launchable, could hold is refused before anything
    is written (:func:`sweep.execution.placement.joined`). Then the output's lease
    (:mod:`sweep.execution.lease`) is held throughout: a second run on the same output is a
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
    from sweep.execution.adoption import adopt_orphans
    from sweep.execution.pool import WorkerPool
    from sweep.execution.progress import SweepProgress

    t0 = time.perf_counter()
    spec, cells = prep.spec, prep.cells
    out = RunOutcome(prepared=prep)
    manifest = Manifest(spec.output)
    store.remove_temp_files(spec.output)
    if not fresh:
        targeted = frozenset(a.label for a in spec.attacks if a.targeted is not None)
        out.adopted = adopt_orphans(manifest, cells, targeted=targeted,
                                    stores_none=lambda c: _stores_none(spec, c))
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
    done = {} if fresh else complete_cells(spec, manifest, cells)
    todo = [c for c in cells if c.cell_id not in done]
    # a transfer unit is redone with its source cell (whose adversarials are rewritten)
    units_done = {} if fresh else manifest.verified(u.cell_id for u in prep.transfers)
    units = [u for u in prep.transfers if u.cell_id not in units_done or u.source_cell not in done]
    out.already_done = len(done)
    if fresh:
        echo(f"{len(cells)} cells (--fresh: recomputing all)")
    elif done:
        echo(f"{len(cells)} cells: {len(done)} already done, computing {len(todo)}")
    else:
        echo(f"{len(cells)} cells to compute")

    # MLflow's store (a new SQLite store runs its migrations: ~6 s here) and the parent run
    # are made in a thread while Ray starts and the cells run; joined after the cells
    tracking = ThreadPoolExecutor(1, thread_name_prefix="sweep-mlflow") if spec.mlflow.enabled else None
    started = None if tracking is None else tracking.submit(_start_tracking, spec, plan)
    tracker, parent_id = None, None

    if units:
        echo(f"{len(prep.transfers)} transfer evaluations: computing {len(units)}")
    if todo or units:  # Ray takes 10-30 s to start on a small machine: say so rather than go quiet
        echo("starting Ray workers" + (f" on {address}" if address else " (local Ray instance)"))
    try:
        with (SweepProgress(total=len(cells) + len(units), done=len(done), enabled=progress) as bar,
              contextlib.nullcontext(pool) if pool else WorkerPool(address, num_cpus) as workers):
            out.driver = run_cells(
                spec, prep.layout, prep.sweep_id, todo, manifest, workers,
                on_cell=lambda samples, failed: bar.advance(samples, failed=failed),
                on_pool=bar.pool, transfers=units,
            )
    except KeyboardInterrupt:
        # Ctrl-C: the parent run must not stay RUNNING forever; a re-run resumes
        # the cells and sets it RUNNING again (Tracker.parent)
        if started is not None:
            tracker, parent_id, _ = started.result()
        if tracker is not None and parent_id is not None:
            tracker.killed(parent_id)
        raise
    finally:
        manifest.close()
        if tracking is not None:
            tracking.shutdown(wait=False)
    if started is not None:
        tracker, parent_id, out.tracking_error = started.result()
    verified = manifest.verified(c.cell_id for c in cells)
    out.cells_done = len(verified)
    out.analysis, out.analysis_error = analyse(spec.output, verified)
    if tracker is not None and parent_id is not None:
        from sweep.tracking.runs import TrackingUnavailable

        try:
            out.tracking_report = tracker.log_results(
                plan, parent_id, out.analysis, set(verified), replace=fresh, failed=len(out.failures))
        except TrackingUnavailable as exc:
            out.tracking_error = str(exc)
    out.seconds = time.perf_counter() - t0
    return out


def complete_cells(spec: SweepSpec, manifest: Manifest, cells: list[Cell]) -> dict[str, Any]:
    """The cells of ``cells`` that need no work: rows verified, and the adversarials
    the spec keeps for them stored whole (``adversarials:`` is not part of the cell id,
    since the rows do not depend on it: the done record says what a cell stored, and a
    cell that stored less than the spec now asks for is computed again)."""
    by_id = {c.cell_id: c for c in cells}

    def covers(cid: str, rec: Any) -> bool:
        cell = by_id[cid]
        return spec.keep_adversarials(cell.model, cell.attack).covers(rec.adversarials)

    return manifest.complete(by_id, covers)


def _stores_none(spec: SweepSpec, cell: Cell) -> str | None:
    """The keep tag of ``cell`` when the spec stores none of its adversarials, else None."""
    keep = spec.keep_adversarials(cell.model, cell.attack)
    if keep.keep == "none" or (keep.keep == "first_n" and cell.start >= keep.n):
        return keep.tag()
    return None


def analyse(output: store.Output, verified: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The run's analysis (:class:`sweep.analysis.collect.ReportData`) from the files of
    ``verified`` (cell id -> manifest record) alone, or ``(None, why)`` when they hold
    no rows. Built once per run: printed, logged to MLflow and returned from there."""
    from sweep.analysis.collect import collect

    try:
        return collect(output, files=sorted(r.file for r in verified.values())), None
    except (ValueError, FileNotFoundError) as exc:
        return None, str(exc)


def _start_tracking(spec: SweepSpec, plan: Plan) -> tuple[Any, str | None, str | None]:
    from sweep.tracking.runs import Tracker, TrackingUnavailable

    try:
        tracker = Tracker(spec.tracking_uri(), spec.experiment)
        return tracker, tracker.parent(plan, spec.text), None
    except TrackingUnavailable as exc:
        return None, None, str(exc)


def sync_tracking(
    output: store.Output, *, tracking_uri: str | None = None, replace: bool = False
) -> Any:
    """Backfill MLflow from the Parquet results of ``output`` (``sweep sync``): the same
    analysis and writer as the end of ``sweep run`` (children, parent status, curves)."""
    from sweep.errors import SpecError
    from sweep.tracking.runs import Tracker

    manifest = Manifest(output)
    try:
        plan = manifest.read_plan()
    except ValueError as exc:
        raise SpecError("OUTPUT", str(output), f"has an unreadable _manifest/plan.json ({exc})") from exc
    if plan is None:
        raise SpecError("OUTPUT", str(output), "has no _manifest/plan.json: is it a sweep output folder?")
    uri = tracking_uri or plan.tracking_uri
    if not uri:
        raise SpecError(
            "--tracking-uri", None,
            "is required: this sweep ran with MLflow off and its output is an object store, "
            "so it has no default store; give an http(s):// server or sqlite:////path/mlflow.db",
        )  # fmt: skip
    spec_text = manifest.read_spec_text()
    tracker = Tracker(uri, plan.experiment)
    parent_id = tracker.parent(plan, spec_text)
    verified = manifest.verified(plan.cell_ids())
    analysis, _ = analyse(output, verified)
    return tracker.log_results(plan, parent_id, analysis, set(verified), replace=replace)
