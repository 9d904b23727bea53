"""The plan of a run (``_manifest/plan.json``): one typed record, written by ``sweep run``
and read by everything after it (``sweep sync``, the report, the curves' flags).

:class:`Plan` is what the file holds: the sweep id, the MLflow settings, the spec as
parsed, the cells per model x attack (:class:`PlanPair`), the model checks' warnings
and the versions of the packages the run used (:data:`PACKAGES`, read at run time by
:func:`package_versions`). ``Plan.from_json`` reads files of older versions: a missing
key takes its default (an old plan recorded no versions: ``versions`` is empty, which
the report shows as "not recorded"), an unknown key is kept in ``extra`` and written
back unchanged. No torch, pandas or Ray: pure data.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PACKAGES: tuple[str, ...] = (
    "attack-sweep", "torch", "torchvision", "ray", "mlflow", "pyarrow", "pandas", "numpy",
)  # fmt: skip
"""The distributions whose versions a run records (and ``python``): the plan keeps
them, the report shows them, the MLflow parent run has them as ``sweep.version.*`` tags."""


def package_versions() -> dict[str, str]:
    """``{"python": ..., "torch": ..., ...}`` of this interpreter; a package of
    :data:`PACKAGES` that is not installed is left out."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@dataclass(frozen=True)
class PlanPair:
    """One model x attack of the plan: the attack's settings as run and its cell ids.

    Attributes:
        model, attack: the model's name and the attack's label.
        attack_name: the registered attack (``pgd``); ``norm``, ``kind``
            (``fixed`` / ``minimization``), ``strategy``: as in the spec.
        epsilons: the attack's epsilons in spec order.
        params: every hyper-parameter, defaults filled in.
        model_entry: the spec's model entry (``{"name": ..., "factory": ...}``).
        targeted: ``None``, or ``{"mode": ..., "targets": [...]}``.
        cells: the cell ids of this pair, in grid order.
        extra: keys this version does not know (a newer writer's), kept as read.
    """

    model: str
    attack: str
    attack_name: str = ""
    norm: str = ""
    kind: str = ""
    strategy: str = ""
    epsilons: tuple[float, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    model_entry: Mapping[str, Any] = field(default_factory=dict)
    targeted: Mapping[str, Any] | None = None
    cells: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["epsilons"] = list(self.epsilons)
        out["cells"] = list(self.cells)
        out["params"] = dict(self.params)
        out["model_entry"] = dict(self.model_entry)
        out["targeted"] = None if self.targeted is None else dict(self.targeted)
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PlanPair:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        targeted = raw.get("targeted")
        return cls(
            model=str(raw.get("model", "")),
            attack=str(raw.get("attack", "")),
            attack_name=str(raw.get("attack_name") or ""),
            norm=str(raw.get("norm") or ""),
            kind=str(raw.get("kind") or ""),
            strategy=str(raw.get("strategy") or ""),
            epsilons=tuple(float(e) for e in raw.get("epsilons") or ()),
            params=dict(raw.get("params") or {}),
            model_entry=dict(raw.get("model_entry") or {}),
            targeted=dict(targeted) if isinstance(targeted, Mapping) else None,
            cells=tuple(str(c) for c in raw.get("cells") or ()),
            extra={k: v for k, v in raw.items() if k not in known},
        )


@dataclass(frozen=True)
class Plan:
    """``_manifest/plan.json``: what the latest run of an output planned (module docstring).

    Attributes:
        schema_version: of the result rows (:data:`sweep.results.schema.SCHEMA_VERSION`); 0 if unknown.
        sweep_id: hash of the cells (:func:`sweep.spec.grid.sweep_id`); ``""`` if unknown.
        name, output: the spec's ``name`` and ``output``.
        mlflow_enabled, tracking_uri, experiment: the run's MLflow settings.
        samples, cells_total: of the grid.
        created: when the plan was written (seconds since the epoch).
        spec: the spec as parsed (a JSON-able mapping).
        pairs: one :class:`PlanPair` per model x attack.
        model_checks: model -> the warnings of its checks (``sweep.models.checks``), as dicts.
        versions: package -> version of the interpreter that ran the sweep
            (:func:`package_versions`); empty when the run recorded none (older plans).
        transfers: the transfer evaluations (``transfer:``), one mapping each:
            ``{"id", "source", "target", "attack", "source_cell"}``; empty without one.
        extra: keys this version does not know, kept as read.
    """

    sweep_id: str = ""
    name: str = ""
    output: str = ""
    schema_version: int = 0
    mlflow_enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = ""
    samples: int = 0
    cells_total: int = 0
    created: float = 0.0
    spec: Mapping[str, Any] = field(default_factory=dict)
    pairs: tuple[PlanPair, ...] = ()
    model_checks: Mapping[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    transfers: tuple[Mapping[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def transfer_ids(self) -> list[str]:
        """Every transfer evaluation's id."""
        return [str(t.get("id")) for t in self.transfers]

    def cell_ids(self) -> list[str]:
        """Every cell id of the plan, pair by pair."""
        return [c for p in self.pairs for c in p.cells]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "sweep_id": self.sweep_id,
            "name": self.name,
            "output": self.output,
            "mlflow_enabled": self.mlflow_enabled,
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment,
            "samples": self.samples,
            "cells_total": self.cells_total,
            "created": self.created,
            "spec": dict(self.spec),
            "pairs": [p.to_dict() for p in self.pairs],
            "model_checks": {m: [dict(f) for f in fs] for m, fs in self.model_checks.items()},
            "versions": dict(self.versions),
            "transfers": [dict(t) for t in self.transfers],
        }
        return {**self.extra, **out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Plan:
        """A plan from the parsed JSON of any version (missing keys: defaults)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        pairs = raw.get("pairs")
        checks = raw.get("model_checks")
        versions = raw.get("versions")
        uri = raw.get("tracking_uri")
        transfers = raw.get("transfers")
        return cls(
            schema_version=_int(raw.get("schema_version")),
            sweep_id=str(raw.get("sweep_id") or ""),
            name=str(raw.get("name") or ""),
            output=str(raw.get("output") or ""),
            mlflow_enabled=bool(raw.get("mlflow_enabled", True)),
            tracking_uri=str(uri) if uri else None,
            experiment=str(raw.get("experiment") or ""),
            samples=_int(raw.get("samples")),
            cells_total=_int(raw.get("cells_total")),
            created=float(raw.get("created") or 0.0),
            spec=dict(raw["spec"]) if isinstance(raw.get("spec"), Mapping) else {},
            pairs=tuple(PlanPair.from_dict(p) for p in pairs or () if isinstance(p, Mapping))
            if isinstance(pairs, list) else (),
            model_checks={
                str(m): [f for f in fs if isinstance(f, Mapping)]
                for m, fs in checks.items() if isinstance(fs, list)
            } if isinstance(checks, Mapping) else {},
            versions={str(k): str(v) for k, v in versions.items()}
            if isinstance(versions, Mapping) else {},
            transfers=tuple({str(k): str(v) for k, v in t.items()} for t in transfers
                            if isinstance(t, Mapping)) if isinstance(transfers, list) else (),
            extra={k: v for k, v in raw.items() if k not in known},
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Parse ``plan.json``; raises ``ValueError`` if it is not a JSON object."""
        raw = json.loads(text)
        if not isinstance(raw, Mapping):
            raise ValueError(f"plan.json holds a JSON {type(raw).__name__}, not an object")
        return cls.from_dict(raw)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0

