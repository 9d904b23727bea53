"""What produced a results folder: the spec, the plan and the software versions.

Read from the files the sweep driver leaves next to its results (all start with
``_`` so Parquet readers skip them): ``_manifest/plan.json`` (a
:class:`~sweep.results.plan.Plan`: sweep id, MLflow settings, cells of the latest
run, the package versions it ran with) and ``_manifest/spec.yaml`` (the spec text),
in a folder or under an object-store URI. Missing files are fine: the report then
shows the spec dict it was given, if any. The versions shown are always the run's,
from its plan; a plan that recorded none (written before plans did) shows them as
not recorded, never the versions of the machine that builds the report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sweep.results.plan import Plan


@dataclass(frozen=True)
class Provenance:
    """Everything the report says about where its numbers came from.

    Attributes:
        sweep_id: from the plan (or ``None``).
        spec_text: the spec as the user wrote it (YAML), or a JSON dump of a given dict.
        plan: the latest run's plan (an empty :class:`Plan` when the folder has none).
        versions: package -> version the run recorded; empty when it recorded none.
        files: the provenance files found, relative to the output folder.
    """

    sweep_id: str | None
    spec_text: str
    plan: Plan
    versions: dict[str, str]
    files: tuple[str, ...] = field(default=())

    @property
    def tracking(self) -> tuple[str | None, str | None]:
        """``(tracking_uri, experiment)`` recorded by the run, where present."""
        return (self.plan.tracking_uri or None, self.plan.experiment or None)

    def cell_ids(self) -> set[str] | None:
        """Cell ids the latest plan lists, or ``None`` if it lists none."""
        return set(self.plan.cell_ids()) or None


def read_provenance(
    output_dir: str | os.PathLike[str], spec: Mapping[str, Any] | None = None
) -> Provenance:
    """Collect the spec, plan and versions for ``output_dir`` (see the module docstring).

    ``output_dir`` is a folder or an object-store URI (:mod:`sweep.results.store`); ``spec``
    (a parsed spec mapping) is used when the output holds no spec text. An unreadable
    plan counts as an empty one (it is still listed among the files read).
    """
    from sweep.results import store
    from sweep.results.manifest import MANIFEST_DIR, PLAN_FILE, SPEC_FILE, Manifest

    try:
        read = Manifest(output_dir).read_plan()
    except (OSError, ValueError):  # unreadable: listed, and counted as an empty plan
        read = Plan()
    found = [] if read is None else [f"{MANIFEST_DIR}/{PLAN_FILE}"]
    plan = Plan() if read is None else read
    spec_text = store.read_text(output_dir, f"{MANIFEST_DIR}/{SPEC_FILE}") or ""
    if spec_text:
        found.append(f"{MANIFEST_DIR}/{SPEC_FILE}")
    elif spec is not None:
        spec_text = json.dumps(spec, indent=2, sort_keys=True, default=str)
    elif plan.spec:
        spec_text = json.dumps(plan.spec, indent=2, sort_keys=True, default=str)
    return Provenance(
        sweep_id=plan.sweep_id or None,
        spec_text=spec_text,
        plan=plan,
        versions=dict(plan.versions),
        files=tuple(found),
    )
