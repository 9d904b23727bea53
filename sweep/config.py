"""Sweep specs: YAML -> validated, frozen :class:`SweepSpec`.

Every mistake a user can make in a spec becomes one :class:`~sweep.errors.SpecError`
naming the dotted key and the bad value (``attacks[1].steps: expected an integer
(got 'ten')``); the CLI turns it into exit code 2 before Ray starts and before
anything is written. This module checks the *shape* of the spec and everything
the attack registry can tell without touching data; :mod:`sweep.inputs` then
loads the dataset, probes each model on one sample and checks that an object-store
``output`` is reachable.

Keys, types and defaults are documented in ``docs/sweep.md`` ("Spec reference");
the tables below are the single source of the key names.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from sweep.errors import SpecError, did_you_mean
from sweep.models.recipes import RECIPES, recipe_identity
from sweep.spec_file import read_spec_file

# Norm names, duplicated from sweep.attacks.norms so parsing needs no torch import.
NORMS: tuple[str, ...] = ("linf", "l2", "l1", "l0")
STRATEGIES: tuple[str, ...] = ("incremental", "independent")
TARGET_MODES: tuple[str, ...] = ("random", "least-likely", "explicit")

TOP_KEYS: tuple[str, ...] = (
    "name", "seed", "output", "dataset", "models", "attacks", "epsilons",
    "strategy", "batch_size", "resources", "retries", "mlflow", "precision",
)
REQUIRED_TOP_KEYS: tuple[str, ...] = ("name", "dataset", "models", "attacks", "epsilons")
# dataset keys read here; every other key is handed to sweep.data.registry
DATASET_OWN_KEYS: tuple[str, ...] = ("name", "samples", "shard_size")
DATASET_ALIASES: dict[str, str] = {"num_samples": "samples"}
# dataset/model keys the registries understand (used only when they do not publish
# their own list as ENTRY_KEYS), so a typo still gets a "did you mean".
DATASET_REGISTRY_KEYS: tuple[str, ...] = ("split", "root", "factory", "kwargs", "num_classes")
MODEL_KEYS: tuple[str, ...] = (
    "name", "factory", "kwargs", "checkpoint", "checkpoint_key", "arch", "trusted", "mean",
    "std", "num_classes",
)
ATTACK_OWN_KEYS: tuple[str, ...] = (
    "name", "label", "norm", "targeted", "epsilons", "strategy", "cascade",
)
TARGETED_KEYS: tuple[str, ...] = ("mode", "targets")
RESOURCE_KEYS: tuple[str, ...] = (
    "gpus_per_cell", "cpus_per_cell", "max_workers", "cells_in_flight_per_worker",
    "models_per_worker", "scale_timeout",
)
RESOURCE_ALIASES: dict[str, str] = {"num_gpus": "gpus_per_cell", "num_cpus": "cpus_per_cell"}
MLFLOW_KEYS: tuple[str, ...] = ("enabled", "tracking_uri", "experiment")
# object stores pyarrow.fs.FileSystem.from_uri resolves (hdfs needs a JVM; not offered)
OUTPUT_SCHEMES: tuple[str, ...] = ("s3", "gs", "gcs", "abfs", "abfss")
# query-string options of those URIs that hold secrets
OUTPUT_SECRET_OPTIONS: frozenset[str] = frozenset(
    {"access_key", "secret_key", "session_token", "account_key", "sas_token", "client_secret"}
)

DEFAULT_SEED = 0
DEFAULT_SHARD_SIZE = 128
DEFAULT_BATCH_SIZE = 256
DEFAULT_RETRIES = 2
DEFAULT_STRATEGY = "incremental"
# fp32: attack calls on a GPU run without TF32 (sweep.attacks.precision.full_precision);
# tf32: PyTorch's default TF32 convolutions, faster, verdicts near the boundary may flip
PRECISIONS: tuple[str, ...] = ("fp32", "tf32")
DEFAULT_PRECISION = "fp32"
DEFAULT_CPUS_PER_CELL = 1.0
DEFAULT_CELLS_IN_FLIGHT = 2
DEFAULT_MODELS_PER_WORKER = 2
# Seconds a sweep waits for a worker to be placed (the autoscaler launching a node a
# cell shape needs, or a lost node coming back) before its cells fail. GPU nodes on
# the clouds take 2 to 5 minutes from request to Ray joining (image pull, driver
# setup), so the default leaves room for one such launch.
DEFAULT_SCALE_TIMEOUT_S = 600.0
# Names become directory names (model=<name>/attack=<label>); keep them printable and short.
MAX_NAME_LENGTH = 120
# ... and a directory name is at most 255 bytes (NAME_MAX) once percent-encoded
MAX_FOLDER_NAME_BYTES = 255
MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class DatasetSpec:
    """``dataset:``. ``entry`` is the mapping handed to ``sweep.data.registry.load_dataset``."""

    name: str
    samples: int | None
    shard_size: int
    entry: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class ModelSpec:
    """One ``models:`` entry. ``entry`` goes to ``sweep.models.registry.load_model``.

    ``identity`` is the canonical JSON of what determines the model's outputs: the
    entry without file paths, with the checkpoint's SHA-256 in place of its path.
    """

    name: str
    entry: dict[str, Any] = field(hash=False)
    identity: str
    index: int


@dataclass(frozen=True)
class TargetSpec:
    """``attacks[i].targeted``: how each sample's target class is chosen."""

    mode: str  # random | least-likely | explicit
    targets: tuple[int, ...] = ()


@dataclass(frozen=True)
class AttackSpec:
    """One ``attacks:`` entry, resolved: defaults filled in from the attack class."""

    label: str
    name: str
    norm: str
    kind: str  # fixed | minimal
    params: dict[str, Any] = field(hash=False)  # every hyper-parameter but norm, defaults included
    user_params: dict[str, Any] = field(hash=False)  # the ones the spec set
    targeted: TargetSpec | None
    epsilons: tuple[float, ...]
    strategy: str
    identity: str
    index: int


@dataclass(frozen=True)
class ResourceSpec:
    """``resources:``. ``gpus_per_cell=None`` means: 1 if the cluster has GPUs, else 0."""

    gpus_per_cell: float | None = None
    cpus_per_cell: float = DEFAULT_CPUS_PER_CELL
    max_workers: int | None = None
    cells_in_flight_per_worker: int = DEFAULT_CELLS_IN_FLIGHT
    models_per_worker: int = DEFAULT_MODELS_PER_WORKER
    scale_timeout: float = DEFAULT_SCALE_TIMEOUT_S


@dataclass(frozen=True)
class MlflowSpec:
    """``mlflow:``. ``tracking_uri=None``: SQLite under ``<output>/_mlflow``."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec. ``raw`` is the parsed YAML as written (for MLflow params)."""

    name: str
    seed: int
    output: Path | str  # a local folder, or an object-store URI (sweep.store)
    dataset: DatasetSpec
    models: tuple[ModelSpec, ...]
    attacks: tuple[AttackSpec, ...]
    epsilons: dict[str, tuple[float, ...]] = field(hash=False)
    strategy: str
    batch_size: int
    resources: ResourceSpec
    retries: int
    mlflow: MlflowSpec
    raw: dict[str, Any] = field(hash=False, repr=False)
    text: str = field(default="", repr=False)
    precision: str = DEFAULT_PRECISION

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)

    def attack(self, label: str) -> AttackSpec:
        return next(a for a in self.attacks if a.label == label)

    @property
    def experiment(self) -> str:
        return self.mlflow.experiment or self.name

    def tracking_uri(self) -> str | None:
        """The MLflow store: the spec's URI, or SQLite under ``<output>/_mlflow``.

        None for an object-store output without ``mlflow.tracking_uri``, which the
        parser allows only with MLflow disabled (``sweep sync`` then asks for a URI).
        """
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        if isinstance(self.output, str):
            return None
        return f"sqlite:///{self.output / '_mlflow' / 'mlflow.db'}"


# -- entry points --------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate the YAML spec at ``path`` (relative paths in it: to the CWD).

    Reading is bounded in size, time and memory (:mod:`sweep.spec_file`): any file
    ends in a :class:`SpecError` or a spec.
    """
    raw, text = read_spec_file(path)
    return parse_spec(raw, text=text)


def parse_spec(raw: Any, *, text: str = "") -> SweepSpec:
    """Validate a parsed spec mapping; see the module docstring."""
    if not isinstance(raw, Mapping):
        raise SpecError("spec", type(raw).__name__, "the top level must be a mapping of keys")
    _check_keys(raw, TOP_KEYS, "")
    for key in REQUIRED_TOP_KEYS:
        if key not in raw or raw[key] is None:
            raise SpecError(key, None, "is required")
    name = _name(raw["name"], "name")
    seed = _int(raw.get("seed", DEFAULT_SEED), "seed", minimum=0)
    output = _output(raw.get("output", f"runs/{name}"))
    dataset = _dataset(raw["dataset"])
    epsilons = _epsilons(raw["epsilons"])
    strategy = _choice(raw.get("strategy", DEFAULT_STRATEGY), "strategy", STRATEGIES)
    models = _models(raw["models"])
    attacks = _attacks(raw["attacks"], epsilons, strategy)
    mlflow = _mlflow(raw.get("mlflow"))
    _output_tracking(output, mlflow)
    return SweepSpec(
        name=name,
        seed=seed,
        output=output,
        dataset=dataset,
        models=models,
        attacks=attacks,
        epsilons=epsilons,
        strategy=strategy,
        batch_size=_int(raw.get("batch_size", DEFAULT_BATCH_SIZE), "batch_size", minimum=1),
        resources=_resources(raw.get("resources")),
        retries=_int(raw.get("retries", DEFAULT_RETRIES), "retries", minimum=0),
        mlflow=mlflow,
        raw=json.loads(json.dumps(_text_keys(raw), default=str)),
        text=text,
        precision=_choice(raw.get("precision", DEFAULT_PRECISION), "precision", PRECISIONS),
    )


def canonical_json(value: Any) -> str:
    """Sorted-key compact JSON: the form every identity hash is taken over.

    YAML keys may be numbers, booleans, null or dates, and ``sort_keys`` cannot order
    ``0`` against ``"a"``: such mappings are dumped with their keys as JSON's text
    (``0`` -> ``"0"``). Only then, so ids of specs that always worked stay the same.
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except TypeError:
        return json.dumps(_text_keys(value), sort_keys=True, separators=(",", ":"), default=repr)


def _text_keys(value: Any) -> Any:
    """``value`` with every mapping key as the text JSON would write for it."""
    if isinstance(value, Mapping):
        return {
            k if isinstance(k, str)
            else json.dumps(k) if k is None or isinstance(k, int | float) else str(k): _text_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_text_keys(v) for v in value]
    return value


# -- sections ------------------------------------------------------------------------------


def _dataset(value: Any) -> DatasetSpec:
    entry = dict(_mapping(value, "dataset"))
    for alias, key in DATASET_ALIASES.items():
        if alias in entry:
            if key in entry:
                raise SpecError(f"dataset.{alias}", entry[alias], f"give either {alias} or {key}, not both")
            entry[key] = entry.pop(alias)
    known = _registry_keys("sweep.data.registry", DATASET_REGISTRY_KEYS)
    _check_keys(entry, (*DATASET_OWN_KEYS, *known), "dataset")
    if entry.get("name") is None and entry.get("factory") is None:
        raise SpecError("dataset.name", None, "is required (a built-in dataset, or give a factory)")
    name = _name(entry["name"], "dataset.name") if entry.get("name") is not None else "custom"
    samples = entry.get("samples")
    samples = None if samples is None else _int(samples, "dataset.samples", minimum=1)
    shard_size = _int(entry.get("shard_size", DEFAULT_SHARD_SIZE), "dataset.shard_size", minimum=1)
    # the registry gets the entry as written, minus what only the sweep reads
    passed = {k: v for k, v in entry.items() if k not in ("samples", "shard_size")}
    return DatasetSpec(name=name, samples=samples, shard_size=shard_size, entry=passed)


def _models(value: Any) -> tuple[ModelSpec, ...]:
    items = _list(value, "models")
    known = _registry_keys("sweep.models.registry", MODEL_KEYS)
    out: list[ModelSpec] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"models[{i}]"
        entry = dict(_mapping(item, where))
        _check_keys(entry, ("name", *known), where)
        if "name" not in entry:
            raise SpecError(f"{where}.name", None, "is required")
        name = _folder_name(_name(entry["name"], f"{where}.name"), f"{where}.name", "model")
        if name in seen:
            raise SpecError(f"{where}.name", name, f"duplicates models[{seen[name]}].name")
        seen[name] = i
        identity = dict(entry)
        identity.pop("trusted", None)  # how a checkpoint is unpickled, not what it holds
        if entry.get("checkpoint") is not None:
            identity["checkpoint"] = _checkpoint_digest(entry["checkpoint"], f"{where}.checkpoint")
        if entry.get("factory") is None and entry.get("arch") is None and name in RECIPES:
            # a built-in is trained on first use: its recipe and torch make its weights
            identity["recipe"] = recipe_identity(name)
        out.append(ModelSpec(name=name, entry=entry, identity=canonical_json(identity), index=i))
    return tuple(out)


def _attacks(
    value: Any, epsilons: dict[str, tuple[float, ...]], default_strategy: str
) -> tuple[AttackSpec, ...]:
    # Importing the registry pulls in torch; it is the only way to know each
    # attack's norms and hyper-parameters, so parse errors still come first.
    from sweep.attacks.registry import UnknownAttackError, attack_class, attack_params, available

    items = _list(value, "attacks")
    out: list[AttackSpec] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"attacks[{i}]"
        entry = _mapping(item, where)
        if "cascade" in entry:
            entry = _cascade_entry(entry, where)
        if "name" not in entry:
            raise SpecError(f"{where}.name", None, "is required")
        name = entry["name"]
        if not isinstance(name, str):
            raise SpecError(f"{where}.name", name, "expected a string")
        try:
            cls = attack_class(name)
            params_defaults = attack_params(name)
        except UnknownAttackError as exc:
            raise SpecError(f"{where}.name", name, f"unknown attack; {did_you_mean(name, available())}") from exc
        except ImportError as exc:
            raise SpecError(f"{where}.name", name, f"attack is registered but not importable: {exc}") from exc
        hyper = {k: v for k, v in params_defaults.items() if k != "norm"}
        _check_keys(entry, (*ATTACK_OWN_KEYS, *hyper), where)
        label_key = f"{where}.label" if "label" in entry else f"{where}.name"
        label = _folder_name(_name(entry.get("label", name), label_key), label_key, "attack")
        if label in seen:
            raise SpecError(
                f"{where}.label", label,
                f"duplicates attacks[{seen[label]}]; give each variant its own label",
            )
        seen[label] = i
        norm = entry.get("norm", cls.norms[0])
        if norm not in cls.norms:
            valid = ", ".join(cls.norms)
            raise SpecError(f"{where}.norm", norm, f"{name} supports: {valid}")
        user_params = {k: v for k, v in entry.items() if k in hyper}
        for key, given in user_params.items():
            _check_param_type(given, hyper[key], f"{where}.{key}")
        try:
            attack = cls(norm=norm, **user_params)
        except ValueError as exc:
            member = re.match(r"cascade: members\[(\d+)\] (\(.*?\): )?", str(exc)) if cls.has_members else None
            if member is not None and "members" in entry:  # name the member as the spec does
                j = int(member.group(1))
                text = str(exc)[member.end():]
                raise SpecError(f"{where}.cascade[{j}]", entry["members"][j], text) from exc
            named = [k for k in user_params if k in str(exc)] or ["norm"] * ("norm" in str(exc))
            if named:
                key = named[0]
                raise SpecError(f"{where}.{key}", entry.get(key, norm), f"{name}: {exc}") from exc
            raise SpecError(where, dict(entry), f"{name} rejects these parameters: {exc}") from exc
        except Exception as exc:  # TypeError mostly; any other is still bad input
            # name the parameter when the attack's message does
            named = [k for k in user_params if k in str(exc)] or ["norm"] * ("norm" in str(exc))
            if named:
                key = named[0]
                raise SpecError(f"{where}.{key}", entry.get(key, norm), f"{name}: {exc}") from exc
            raise SpecError(where, dict(entry), f"{name} rejects these parameters: {exc}") from exc
        targeted = _targeted(entry.get("targeted"), f"{where}.targeted")
        if targeted is not None and not cls.supports_targeted:
            raise SpecError(f"{where}.targeted", entry.get("targeted"), f"{name} has no targeted mode")
        if "epsilons" in entry:
            eps = _eps_list(entry["epsilons"], f"{where}.epsilons")
        elif norm in epsilons:
            eps = epsilons[norm]
        else:
            given = ", ".join(epsilons) or "none"
            raise SpecError(
                f"epsilons.{norm}", None,
                f"attack {label!r} ({where}) uses norm {norm} but the spec has no {norm} "
                f"epsilons (it has: {given}); add `epsilons: {{{norm}: [...]}}`",
            )
        strategy = _choice(entry.get("strategy", default_strategy), f"{where}.strategy", STRATEGIES)
        params = {**hyper, **user_params}
        identity = canonical_json({
            "label": label, "name": name, "norm": norm, "params": params,
            "targeted": None if targeted is None else [targeted.mode, list(targeted.targets)],
            "kind": attack.kind,
        })
        out.append(AttackSpec(
            label=label, name=name, norm=norm, kind=attack.kind, params=params,
            user_params=user_params, targeted=targeted, epsilons=eps, strategy=strategy,
            identity=identity, index=i,
        ))
    return tuple(out)


def _cascade_entry(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``{label, cascade: [member, ...], norm?}`` -> the ``cascade`` attack's entry.

    Members are attack names or ``{name, label?, **params}`` mappings
    (:mod:`sweep.attacks.cascade`); the cascade's label is required, since the
    members' names say nothing about the group.
    """
    if "name" in entry:
        raise SpecError(
            f"{where}.name", entry["name"],
            "a cascade entry has no name of its own: its members are under `cascade:`",
        )
    if "label" not in entry:
        raise SpecError(f"{where}.label", None, "is required for a cascade (e.g. label: aa-standard)")
    members = _list(entry["cascade"], f"{where}.cascade")
    for j, member in enumerate(members):
        if not isinstance(member, str):
            _mapping(member, f"{where}.cascade[{j}]")  # names and parameters: the registry checks
    out = {k: v for k, v in entry.items() if k != "cascade"}
    return {**out, "name": "cascade", "members": members}


def _targeted(value: Any, where: str) -> TargetSpec | None:
    if value is None or value is False:
        return None
    if isinstance(value, str):
        value = {"mode": value}
    entry = _mapping(value, where)
    _check_keys(entry, TARGETED_KEYS, where)
    mode = _choice(entry.get("mode"), f"{where}.mode", TARGET_MODES)
    targets: tuple[int, ...] = ()
    if mode == "explicit":
        raw = entry.get("targets")
        if raw is None:
            raise SpecError(f"{where}.targets", None, "explicit mode needs a list of target classes")
        targets = tuple(
            _int(t, f"{where}.targets[{j}]", minimum=0) for j, t in enumerate(_list(raw, f"{where}.targets"))
        )
    elif entry.get("targets") is not None:
        raise SpecError(f"{where}.targets", entry["targets"], f"only explicit mode takes targets (mode is {mode})")
    return TargetSpec(mode=mode, targets=targets)


def _epsilons(value: Any) -> dict[str, tuple[float, ...]]:
    entry = _mapping(value, "epsilons")
    _check_keys(entry, NORMS, "epsilons")
    return {norm: _eps_list(v, f"epsilons.{norm}") for norm, v in entry.items()}


def _eps_list(value: Any, where: str) -> tuple[float, ...]:
    items = _list(value, where)
    out: list[float] = []
    for j, v in enumerate(items):
        f = _finite(v, f"{where}[{j}]")
        if f is None:
            raise SpecError(f"{where}[{j}]", v, "expected a number")
        if f < 0:
            raise SpecError(f"{where}[{j}]", v, "expected a finite number >= 0")
        f += 0.0  # -0.0 is 0.0: one budget, one spelling in the results
        if f in out:
            raise SpecError(f"{where}[{j}]", v, "appears twice")
        out.append(f)
    return tuple(out)


def _finite(value: Any, where: str) -> float | None:
    """``value`` as a finite float; None if it is not a number at all; a SpecError if it
    is one that no float holds (NaN, inf, a 310-digit integer)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise SpecError(where, value, "expected a finite number")
    return f


def _resources(value: Any) -> ResourceSpec:
    if value is None:
        return ResourceSpec()
    entry = dict(_mapping(value, "resources"))
    for alias, key in RESOURCE_ALIASES.items():
        if alias in entry:
            if key in entry:
                raise SpecError(f"resources.{alias}", entry[alias], f"give either {alias} or {key}, not both")
            entry[key] = entry.pop(alias)
    _check_keys(entry, RESOURCE_KEYS, "resources")
    gpus = entry.get("gpus_per_cell")
    return ResourceSpec(
        gpus_per_cell=None if gpus is None else _number(gpus, "resources.gpus_per_cell", minimum=0.0),
        cpus_per_cell=_number(
            entry.get("cpus_per_cell", DEFAULT_CPUS_PER_CELL), "resources.cpus_per_cell", minimum=0.0
        ),
        max_workers=None if entry.get("max_workers") is None
        else _int(entry["max_workers"], "resources.max_workers", minimum=1),
        cells_in_flight_per_worker=_int(
            entry.get("cells_in_flight_per_worker", DEFAULT_CELLS_IN_FLIGHT),
            "resources.cells_in_flight_per_worker", minimum=1,
        ),
        models_per_worker=_int(
            entry.get("models_per_worker", DEFAULT_MODELS_PER_WORKER),
            "resources.models_per_worker", minimum=1,
        ),
        scale_timeout=_number(
            entry.get("scale_timeout", DEFAULT_SCALE_TIMEOUT_S), "resources.scale_timeout", minimum=1.0
        ),
    )


def _mlflow(value: Any) -> MlflowSpec:
    if value is None or value is True:
        return MlflowSpec()
    if value is False:
        return MlflowSpec(enabled=False)
    entry = _mapping(value, "mlflow")
    _check_keys(entry, MLFLOW_KEYS, "mlflow")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SpecError("mlflow.enabled", enabled, "expected true or false")
    uri = entry.get("tracking_uri")
    if uri is not None:
        uri = _tracking_uri(uri)
    experiment = entry.get("experiment")
    if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
        raise SpecError("mlflow.experiment", experiment, "expected a non-empty string")
    return MlflowSpec(enabled=enabled, tracking_uri=uri, experiment=experiment)


def _tracking_uri(uri: Any) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise SpecError("mlflow.tracking_uri", uri, "expected a URI string")
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme == "sqlite":
        # sqlite:///relative.db is relative to the CWD: pin it, so `sweep sync` run
        # from elsewhere finds the same store.
        prefix = "sqlite:///"
        if not uri.startswith(prefix):
            raise SpecError("mlflow.tracking_uri", uri, "expected sqlite:///path/to/mlflow.db")
        path = uri[len(prefix):]
        if not path.startswith("/"):
            path = str(Path.cwd() / path)
        return prefix + path
    if scheme in ("http", "https", "databricks"):
        return uri
    if scheme in ("", "file") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise SpecError(
            "mlflow.tracking_uri", uri,
            "MLflow >= 3.13 refuses the plain file store; use sqlite:///path/mlflow.db "
            "or an http(s):// tracking server",
        )
    return uri


def _output(value: Any) -> Path | str:
    """A local folder (made absolute), or an object-store URI kept as written."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise SpecError("output", value, "expected a directory path or an object-store URI")
    if isinstance(value, str) and "://" in value:
        # Path("s3://bucket/x") would quietly become a local folder named "s3:"
        scheme = value.split("://", 1)[0].lower()
        if scheme != "file":
            return _output_uri(value, scheme)
        value = unquote(urlparse(value).path)
    if "\0" in os.fspath(value):
        raise SpecError("output", value, "contains a NUL character")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    path = Path(os.path.normpath(path))
    long = next((p for p in path.parts if len(os.fsencode(p)) > MAX_FOLDER_NAME_BYTES), None)
    if long is not None:  # also the default runs/<name> of a long sweep name
        raise SpecError(
            "output", str(value),
            f"has a folder name of {len(os.fsencode(long))} bytes, above the "
            f"{MAX_FOLDER_NAME_BYTES} a file system allows (a long `name`? give `output`)",
        )  # fmt: skip
    if path.exists() and not path.is_dir():
        raise SpecError("output", str(value), "is a file, not a directory")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SpecError("output", str(value), f"{parent} is a file, so the folder cannot be created")
    if not os.access(parent if not path.exists() else path, os.W_OK):
        raise SpecError("output", str(value), "is not writable")
    return path


def _output_uri(uri: str, scheme: str) -> str:
    """Check an object-store URI's shape (reachability is :mod:`sweep.inputs`' job)."""
    if scheme not in OUTPUT_SCHEMES:
        raise SpecError(
            "output", uri,
            f"has scheme {scheme}://, which attack-sweep does not write to; use a folder path "
            f"or one of {', '.join(s + '://' for s in OUTPUT_SCHEMES)}",
        )  # fmt: skip
    parts = urlparse(uri)
    if not parts.netloc or not parts.path.strip("/"):
        raise SpecError("output", uri, f"expected {scheme}://BUCKET/PREFIX (a prefix keeps sweeps apart)")
    secrets = sorted(k for k in parse_qs(parts.query) if k.lower() in OUTPUT_SECRET_OPTIONS)
    if secrets:
        # the output URI is copied into plan.json, MLflow tags and logs
        raise SpecError(
            "output", f"{scheme}://{parts.netloc}{parts.path}?{'&'.join(s + '=...' for s in secrets)}",
            "carries credentials in its query string, which would be copied into plan.json, "
            "MLflow tags and logs; give them through the environment (AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, an instance profile, GOOGLE_APPLICATION_CREDENTIALS)",
        )  # fmt: skip
    return uri.rstrip("/") if not parts.query else uri


def _output_tracking(output: Path | str, mlflow: MlflowSpec) -> None:
    """The default MLflow store is SQLite inside a local output folder: an object store has none."""
    if isinstance(output, str) and mlflow.enabled and mlflow.tracking_uri is None:
        raise SpecError(
            "mlflow.tracking_uri", None,
            f"is required when output is an object store ({output.split('://', 1)[0]}://): the "
            "default SQLite store lives inside a local output folder; give an http(s):// MLflow "
            "server, sqlite:////absolute/path/mlflow.db, or set mlflow.enabled: false",
        )  # fmt: skip


# -- small typed readers ---------------------------------------------------------------------


def _check_keys(entry: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in entry:
        if key not in allowed:
            dotted = f"{where}.{key}" if where else str(key)
            raise SpecError(dotted, entry[key], f"unknown key {key!r}; {did_you_mean(str(key), allowed)}")


def _registry_keys(module: str, fallback: tuple[str, ...]) -> tuple[str, ...]:
    """The entry keys a registry accepts: its ``ENTRY_KEYS`` if it publishes one."""
    import importlib

    keys = getattr(importlib.import_module(module), "ENTRY_KEYS", None)
    return tuple(keys) if keys is not None else fallback


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(where, value, "expected a mapping (key: value)")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple) or not value:
        raise SpecError(where, value, "expected a non-empty list")
    return list(value)


def _int(value: Any, where: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(where, value, "expected an integer")
    if minimum is not None and value < minimum:
        raise SpecError(where, value, f"expected an integer >= {minimum}")
    if value > MAX_INT:  # seeds and counts end up in int64 columns and tensors
        raise SpecError(where, value, f"expected an integer <= {MAX_INT} (2**63 - 1)")
    return int(value)


def _number(value: Any, where: str, *, minimum: float | None = None) -> float:
    f = _finite(value, where)
    if f is None:
        raise SpecError(where, value, "expected a number")
    if minimum is not None and f < minimum:
        raise SpecError(where, value, f"expected a number >= {minimum:g}")
    return f


def _choice(value: Any, where: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise SpecError(where, value, did_you_mean(str(value), choices))
    return str(value)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(where, value, "expected a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise SpecError(where, value, f"is longer than {MAX_NAME_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or value != value.strip():
        raise SpecError(where, value, "must not contain control characters or surrounding spaces")
    return value


def _folder_name(name: str, where: str, column: str) -> str:
    """A model name or attack label whose results folder (``model=<name>``, percent-
    encoded by :func:`sweep.store.partition_dir`) fits in a file name: four bytes of
    an emoji become twelve, so 40 emoji are too long at 120 characters."""
    from sweep.store import partition_dir

    folder = partition_dir(name, name).split("/")[0].replace("model=", f"{column}=", 1)
    if len(folder.encode()) > MAX_FOLDER_NAME_BYTES:
        raise SpecError(
            where, name,
            f"makes a results folder name of {len(folder.encode())} bytes once percent-encoded "
            f"({column}=...), above the {MAX_FOLDER_NAME_BYTES} a file system allows; shorten it "
            "(non-ASCII characters take 6-12 bytes each)",
        )  # fmt: skip
    return name


def _check_param_type(value: Any, default: Any, where: str) -> None:
    """Catch ``steps: ten`` here, not as a TypeError deep in a worker."""
    if default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        want = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "an integer"
    elif isinstance(default, float):
        ok = _finite(value, where) is not None
        want = "a number"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        want = "a string"
    else:
        return
    if not ok:
        raise SpecError(where, value, f"expected {want} (default {default!r})")


def _checkpoint_digest(value: Any, where: str) -> str:
    """SHA-256 of a checkpoint file: its content, not its path, names the model."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise SpecError(where, value, "expected a file path")
    path = Path(value).expanduser()
    if not path.exists():
        raise SpecError(where, str(value), "no such file")
    if not path.is_file():
        raise SpecError(where, str(value), "is not a file")
    return _file_sha256(path.resolve(), where, str(value))


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path, where: str, shown: str) -> str:
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _DIGESTS:
            h = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            _DIGESTS[key] = "sha256:" + h.hexdigest()
        return _DIGESTS[key]
    except OSError as exc:
        raise SpecError(where, shown, f"cannot be read: {exc.strerror or exc}") from exc
