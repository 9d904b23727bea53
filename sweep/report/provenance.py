"""What produced a results folder: the spec, the plan and the software versions.

Read from the files the sweep driver leaves next to its results (all start with
``_`` so Parquet readers skip them): ``_manifest/plan.json`` (sweep id, MLflow
settings, cells of the latest run), ``_manifest/spec.yaml`` (the spec text) and,
if present, ``_sweep.json`` (in a folder or under an object-store URI). Missing files are fine: the report then shows the
spec dict it was given, if any, and the versions of the environment that built
the report, labelled as such.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PACKAGES: tuple[str, ...] = (
    "attack-sweep", "torch", "torchvision", "ray", "mlflow", "pandas", "pyarrow",
    "numpy", "matplotlib",
)  # fmt: skip
"""Distributions whose versions the report lists when the sweep recorded none."""


@dataclass(frozen=True)
class Provenance:
    """Everything the report says about where its numbers came from.

    Attributes:
        sweep_id: from the plan (or ``None``).
        spec_text: the spec as the user wrote it (YAML), or a JSON dump of a given dict.
        plan: the parsed ``plan.json`` (or ``_sweep.json``), ``{}`` when absent.
        versions: package -> version.
        versions_source: ``"sweep"`` (recorded by the run) or ``"report"`` (this environment).
        files: the provenance files found, relative to the output folder.
    """

    sweep_id: str | None
    spec_text: str
    plan: dict[str, Any]
    versions: dict[str, str]
    versions_source: str
    files: tuple[str, ...] = field(default=())

    @property
    def tracking(self) -> tuple[str | None, str | None]:
        """``(tracking_uri, experiment)`` recorded by the run, where present
        (plan keys ``tracking_uri`` / ``experiment``, or an ``mlflow`` mapping)."""
        mlflow = self.plan.get("mlflow")
        mlflow = mlflow if isinstance(mlflow, Mapping) else {}
        uri = self.plan.get("tracking_uri") or mlflow.get("tracking_uri")
        experiment = self.plan.get("experiment") or mlflow.get("experiment")
        return (str(uri) if uri else None, str(experiment) if experiment else None)

    def cell_ids(self) -> set[str] | None:
        """Cell ids the latest plan lists, or ``None`` if it lists none.

        Reads ``pairs[*].cells`` (what ``sweep run`` writes), or a top-level
        ``cells`` / ``cell_ids`` list of ids or of records with a ``cell_id``.
        """
        pairs = self.plan.get("pairs")
        if isinstance(pairs, list):
            ids = {
                str(c) for p in pairs if isinstance(p, Mapping) for c in _ids(p.get("cells", []))
            }
            return ids or None
        for key in ("cell_ids", "cells"):
            if key in self.plan:
                return set(_ids(self.plan[key])) or None
        return None


def _ids(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        if "cell_id" in value:
            yield str(value["cell_id"])
    elif isinstance(value, Iterable):
        for v in value:
            yield from _ids(v)


def environment_versions() -> dict[str, str]:
    """Versions of :data:`PACKAGES` installed here (``-`` if absent), plus Python."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def _read_json(output_dir: str | os.PathLike[str], rel: str) -> dict[str, Any] | None:
    """The JSON object in ``output_dir/rel``; None if absent, ``{}`` if unreadable."""
    from sweep import store

    try:
        text = store.read_text(output_dir, rel)
    except (OSError, ValueError):
        return {}
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def read_provenance(
    output_dir: str | os.PathLike[str], spec: Mapping[str, Any] | None = None
) -> Provenance:
    """Collect the spec, plan and versions for ``output_dir`` (see the module docstring).

    ``output_dir`` is a folder or an object-store URI (:mod:`sweep.store`); ``spec``
    (a parsed spec mapping) is used when the output holds no spec text.
    """
    from sweep import store

    found = []
    plan: dict[str, Any] = {}
    for rel in ("_manifest/plan.json", "_sweep.json"):
        value = _read_json(output_dir, rel)
        if value is not None:
            plan = {**value, **plan}
            found.append(rel)
    spec_text = store.read_text(output_dir, "_manifest/spec.yaml") or ""
    if spec_text:
        found.append("_manifest/spec.yaml")
    elif spec is not None:
        spec_text = json.dumps(spec, indent=2, sort_keys=True, default=str)
    elif isinstance(plan.get("spec"), Mapping):
        spec_text = json.dumps(plan["spec"], indent=2, sort_keys=True, default=str)
    recorded = plan.get("versions")
    if isinstance(recorded, Mapping) and recorded:
        versions = {str(k): str(v) for k, v in recorded.items()}
        source = "sweep"
    else:
        versions = environment_versions()
        source = "report"
    sweep_id = plan.get("sweep_id")
    return Provenance(
        sweep_id=str(sweep_id) if sweep_id else None,
        spec_text=spec_text,
        plan=plan,
        versions=versions,
        versions_source=source,
        files=tuple(found),
    )
