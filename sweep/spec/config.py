"""Sweep specs: YAML -> validated, frozen :class:`SweepSpec`.

Every mistake a user can make in a spec becomes one :class:`~sweep.errors.SpecError`
naming the dotted key and the bad value (``attacks[1].steps: expected an integer
(got 'ten')``); the CLI turns it into exit code 2 before Ray starts and before
anything is written. This module checks the *shape* of the spec and everything
the attack registry can tell without touching data; :mod:`sweep.spec.inputs` then
loads the dataset, probes each model on one sample and checks that an object-store
``output`` is reachable.

Keys, types, aliases, bounds and defaults are declared once, as the frozen pydantic
models of :mod:`sweep.spec.sections` (an attack's hyper-parameters: its ``__init__``
signature, :mod:`sweep.attacks.params`); one formatter (:mod:`sweep.validation.messages`)
words their errors. This module then checks what a declaration cannot (the output
folder or URI, checkpoint files, names unique and short enough for a folder, the
attack registry) and builds the records below. Documented in ``docs/sweep.md``
("Spec reference").
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

from pydantic import BaseModel, ValidationError, create_model

from sweep.errors import SpecError, did_you_mean
from sweep.models.recipes import RECIPES, recipe_identity
from sweep.spec.reader import read_spec_file
from sweep.spec.sections import (
    DEFAULT_PRECISION,
    SWEEP_DATASET_KEYS,
    AdversarialSpec,
    AttackSection,
    DatasetSection,
    MlflowSpec,
    ModelSection,
    ResourceSpec,
    SpecSection,
    TargetSpec,
    TransferSpec,
)
from sweep.validation.messages import spec_error
from sweep.validation.names import STRATEGIES, TARGET_MODES

__all__ = [  # besides what is defined here: what other modules import from the config
    "DEFAULT_PRECISION", "STRATEGIES", "TARGET_MODES", "AdversarialSpec", "MlflowSpec", "ResourceSpec",
    "TargetSpec", "TransferSpec",
]

# The key names, read from the declarations (docs/sweep.md documents each: test_docs).
TOP_KEYS: tuple[str, ...] = tuple(SpecSection.model_fields)
REQUIRED_TOP_KEYS: tuple[str, ...] = tuple(k for k, f in SpecSection.model_fields.items() if f.is_required())
DATASET_OWN_KEYS: tuple[str, ...] = SWEEP_DATASET_KEYS  # the rest go to sweep.data.registry
DATASET_ALIASES: dict[str, str] = DatasetSection.aliases()
MODEL_KEYS: tuple[str, ...] = tuple(ModelSection.model_fields)
ATTACK_OWN_KEYS: tuple[str, ...] = (*AttackSection.model_fields, "cascade")
TARGETED_KEYS: tuple[str, ...] = tuple(TargetSpec.model_fields)
RESOURCE_KEYS: tuple[str, ...] = tuple(ResourceSpec.model_fields)
RESOURCE_ALIASES: dict[str, str] = ResourceSpec.aliases()
MLFLOW_KEYS: tuple[str, ...] = tuple(MlflowSpec.model_fields)
ADVERSARIAL_KEYS: tuple[str, ...] = tuple(AdversarialSpec.model_fields)
TRANSFER_KEYS: tuple[str, ...] = tuple(TransferSpec.model_fields)
# object stores pyarrow.fs.FileSystem.from_uri resolves (hdfs needs a JVM; not offered)
OUTPUT_SCHEMES: tuple[str, ...] = ("s3", "gs", "gcs", "abfs", "abfss")
# query-string options of those URIs that hold secrets
OUTPUT_SECRET_OPTIONS: frozenset[str] = frozenset(
    {"access_key", "secret_key", "session_token", "account_key", "sas_token", "client_secret"}
)
# ... and a directory name is at most 255 bytes (NAME_MAX) once percent-encoded
MAX_FOLDER_NAME_BYTES = 255


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
class SweepSpec:
    """A validated sweep spec. ``raw`` is the parsed YAML as written (for MLflow params)."""

    name: str
    seed: int
    output: Path | str  # a local folder, or an object-store URI (sweep.results.store)
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
    adversarials: AdversarialSpec = field(default_factory=AdversarialSpec)
    transfer: TransferSpec | None = None

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)

    def attack(self, label: str) -> AttackSpec:
        return next(a for a in self.attacks if a.label == label)

    def transferred(self, model: str, attack: str) -> bool:
        """Whether ``model``'s adversarials of ``attack`` go to the transfer targets."""
        t = self.transfer
        return t is not None and model in t.sources and (t.attacks is None or attack in t.attacks)

    def keep_adversarials(self, model: str, attack: str) -> AdversarialSpec:
        """What a cell of ``model`` x ``attack`` stores: the spec's ``adversarials``, or
        all of them for a transfer source (its targets evaluate every adversarial)."""
        if self.transferred(model, attack):
            return AdversarialSpec(keep="all", n=self.adversarials.n)
        return self.adversarials

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

    Reading is bounded in size, time and memory (:mod:`sweep.spec.reader`): any file
    ends in a :class:`SpecError` or a spec.
    """
    raw, text = read_spec_file(path)
    return parse_spec(raw, text=text)


def parse_spec(raw: Any, *, text: str = "") -> SweepSpec:
    """Validate a parsed spec mapping; see the module docstring."""
    if not isinstance(raw, Mapping):
        raise SpecError("spec", type(raw).__name__, "the top level must be a mapping of keys")
    top = _validated(SpecSection, raw, "")
    output = _output(raw.get("output", f"runs/{top.name}"))
    epsilons = {norm: tuple(getattr(top.epsilons, norm)) for norm in raw["epsilons"]}
    _output_tracking(output, top.mlflow)
    models = _models(top.models, raw["models"])
    attacks = _attacks(top.attacks, epsilons, top.strategy)
    if top.transfer is not None:
        _check_transfer(top.transfer, models, attacks)
    return SweepSpec(
        name=top.name,
        seed=top.seed,
        output=output,
        dataset=_dataset(top.dataset, raw["dataset"]),
        models=models,
        attacks=attacks,
        epsilons=epsilons,
        strategy=top.strategy,
        batch_size=top.batch_size,
        resources=top.resources,
        retries=top.retries,
        mlflow=top.mlflow,
        raw=json.loads(json.dumps(_text_keys(raw), default=str)),
        text=text,
        precision=top.precision,
        adversarials=top.adversarials,
        transfer=top.transfer,
    )


def _check_transfer(transfer: TransferSpec, models: tuple[ModelSpec, ...], attacks: tuple[AttackSpec, ...]) -> None:
    """``transfer.sources`` / ``targets`` name models of the spec, ``attacks`` its labels."""
    names = [m.name for m in models]
    labels = [a.label for a in attacks]
    for key, known, what in (("sources", names, "a model"), ("targets", names, "a model"),
                             ("attacks", labels, "an attack label")):
        values = getattr(transfer, key) or []
        for j, value in enumerate(values):
            if value not in known:
                raise SpecError(f"transfer.{key}[{j}]", value,
                                f"is not {what} of this spec; {did_you_mean(value, known)}")
            if value in values[:j]:
                raise SpecError(f"transfer.{key}[{j}]", value, "appears twice")


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


M = TypeVar("M", bound=BaseModel)


# -- sections ------------------------------------------------------------------------------


def _validated(model: type[M], value: Any, where: str) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise spec_error(exc, model, where) from None


def _dataset(section: DatasetSection, raw: Mapping[str, Any]) -> DatasetSpec:
    aliases = DatasetSection.aliases()
    # the registry gets the entry as written, minus what only the sweep reads
    entry = {aliases.get(k, k): v for k, v in raw.items()}
    passed = {k: v for k, v in entry.items() if k not in SWEEP_DATASET_KEYS[1:]}
    return DatasetSpec(name=section.name or "custom", samples=section.samples,
                       shard_size=section.shard_size, entry=passed)


def _models(sections: list[ModelSection], raw: list[Mapping[str, Any]]) -> tuple[ModelSpec, ...]:
    out: list[ModelSpec] = []
    seen: dict[str, int] = {}
    for i, (section, item) in enumerate(zip(sections, raw, strict=True)):
        where = f"models[{i}]"
        entry = dict(item)
        name = _folder_name(section.name, f"{where}.name", "model")
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


@functools.cache
def attack_section(name: str) -> type[AttackSection]:
    """The model of an ``attacks:`` entry naming attack ``name``: :class:`AttackSection`
    plus the attack's hyper-parameters, whose types and bounds its constructor checks
    (the declaration is its ``__init__``; :mod:`sweep.attacks.params`)."""
    from sweep.attacks.declared import hyper_params

    hyper = {k: (Any, None) for k in hyper_params(name) if k != "norm"}
    return create_model(f"{name}Entry", __base__=AttackSection, **hyper)


def _attacks(
    items: list[Mapping[str, Any]], epsilons: dict[str, tuple[float, ...]], default_strategy: str
) -> tuple[AttackSpec, ...]:
    # An entry is checked from its attack's declaration, read from the source without
    # importing torch (sweep.attacks.declared: the same checks the constructor applies);
    # an attack only its import can describe is imported and constructed.
    from sweep.attacks.declared import hyper_params, resolve
    from sweep.attacks.params import MemberError, ParamError
    from sweep.attacks.registry import UnknownAttackError, available

    out: list[AttackSpec] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"attacks[{i}]"
        entry = _cascade_entry(item, where) if "cascade" in item else dict(item)
        name = entry.get("name")
        if name is None:
            raise SpecError(f"{where}.name", None, "is required")
        if not isinstance(name, str):
            raise SpecError(f"{where}.name", name, "expected a string")
        try:
            declared = hyper_params(name)
            section = _validated(attack_section(name), entry, where)
        except UnknownAttackError as exc:
            raise SpecError(f"{where}.name", name, f"unknown attack; {did_you_mean(name, available())}") from exc
        except ImportError as exc:
            raise SpecError(f"{where}.name", name, f"attack is registered but not importable: {exc}") from exc
        label_key = f"{where}.label" if section.label is not None else f"{where}.name"
        label = _folder_name(section.label or name, label_key, "attack")
        if label in seen:
            raise SpecError(
                f"{where}.label", label,
                f"duplicates attacks[{seen[label]}]; give each variant its own label",
            )
        seen[label] = i
        hyper = {k: v for k, v in declared.items() if k != "norm"}
        user_params = {k: v for k, v in entry.items() if k in hyper}
        try:  # the hyper-parameters against their declaration, as the constructor checks them
            attack = resolve(name, section.norm, user_params)
        except MemberError as exc:  # named as the spec does: cascade[j], not members[j]
            at = f"{where}.cascade[{exc.index}]"
            if exc.cause is None:
                raise SpecError(at, entry["members"][exc.index], exc.detail) from exc
            cause = exc.cause
            raise SpecError(f"{at}.{cause.field}", cause.value, f"{exc.label}: {cause.message}") from exc
        except ParamError as exc:
            key = exc.field.replace("members", "cascade", 1) if "members" in entry else exc.field
            raise SpecError(f"{where}.{key}", exc.value, exc.message) from exc
        except Exception as exc:  # a constructor's own error is still bad input
            raise SpecError(where, dict(entry), f"{name} rejects these parameters: {exc}") from exc
        targeted = section.targeted
        if targeted is not None and not attack.supports_targeted:
            raise SpecError(f"{where}.targeted", entry.get("targeted"), f"{name} has no targeted mode")
        norm = attack.norm
        if section.epsilons is not None:
            eps = tuple(section.epsilons)
        elif norm in epsilons:
            eps = epsilons[norm]
        else:
            given = ", ".join(epsilons) or "none"
            raise SpecError(
                f"epsilons.{norm}", None,
                f"attack {label!r} ({where}) uses norm {norm} but the spec has no {norm} "
                f"epsilons (it has: {given}); add `epsilons: {{{norm}: [...]}}`",
            )
        params = {**hyper, **user_params}
        identity = canonical_json({
            "label": label, "name": name, "norm": norm, "params": params,
            "targeted": None if targeted is None else [targeted.mode, list(targeted.targets)],
            "kind": attack.kind,
        })
        out.append(AttackSpec(
            label=label, name=name, norm=norm, kind=attack.kind, params=params,
            user_params=user_params, targeted=targeted, epsilons=eps,
            strategy=section.strategy or default_strategy, identity=identity, index=i,
        ))
    return tuple(out)


def _cascade_entry(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``{label, cascade: [member, ...], norm?}`` -> the ``cascade`` attack's entry.

    Members are attack names or ``{name, label?, **params}`` mappings
    (:mod:`sweep.attacks.cascade`, which checks them); the cascade's label is
    required, since the members' names say nothing about the group.
    """
    if "name" in entry:
        raise SpecError(
            f"{where}.name", entry["name"],
            "a cascade entry has no name of its own: its members are under `cascade:`",
        )
    if "label" not in entry:
        raise SpecError(f"{where}.label", None, "is required for a cascade (e.g. label: aa-standard)")
    out = {k: v for k, v in entry.items() if k != "cascade"}
    return {**out, "name": "cascade", "members": entry["cascade"]}


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
    """Check an object-store URI's shape (reachability is :mod:`sweep.spec.inputs`' job)."""
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


# -- names and files --------------------------------------------------------------------------


def _folder_name(name: str, where: str, column: str) -> str:
    """A model name or attack label whose results folder (``model=<name>``, percent-
    encoded by :func:`sweep.results.store.partition_dir`) fits in a file name: four bytes of
    an emoji become twelve, so 40 emoji are too long at 120 characters."""
    from sweep.results.store import partition_dir

    folder = partition_dir(name, name).split("/")[0].replace("model=", f"{column}=", 1)
    if len(folder.encode()) > MAX_FOLDER_NAME_BYTES:
        raise SpecError(
            where, name,
            f"makes a results folder name of {len(folder.encode())} bytes once percent-encoded "
            f"({column}=...), above the {MAX_FOLDER_NAME_BYTES} a file system allows; shorten it "
            "(non-ASCII characters take 6-12 bytes each)",
        )  # fmt: skip
    return name


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
