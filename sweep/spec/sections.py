"""The spec's sections as frozen pydantic models: keys, aliases, types, bounds and
defaults, declared once.

Every section forbids unknown keys (answered with a "did you mean"), takes its aliases
(``num_samples`` for ``samples``) but not an alias and its key together, and reads
scalars strictly (``steps: "10"`` and ``samples: true`` are mistakes, an integer is a
number). :mod:`sweep.spec.config` validates a spec with :class:`SpecSection`, turns the first
error into a :class:`~sweep.errors.SpecError` (:mod:`sweep.validation.messages`), then does
what a declaration cannot (files, URIs, the attack registry, identities). An attack
entry is :class:`AttackSection` plus that attack's hyper-parameters, whose
declaration is the attack's ``__init__`` (:mod:`sweep.attacks.params`). Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    field_validator,
    model_validator,
)

from sweep.errors import SpecError
from sweep.validation.messages import MAX_INT
from sweep.validation.names import AdversarialKeep, Precision, Strategy, TargetMode

DEFAULT_SEED = 0
DEFAULT_SHARD_SIZE = 128
DEFAULT_BATCH_SIZE = 256
DEFAULT_RETRIES = 2
DEFAULT_STRATEGY: Strategy = "incremental"
DEFAULT_PRECISION: Precision = "fp32"
DEFAULT_ADVERSARIAL_KEEP: AdversarialKeep = "first_n"
DEFAULT_ADVERSARIAL_N = 16  # a gallery's worth: the first shard only, under 5% of a sweep's time
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


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"is longer than {MAX_NAME_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or value != value.strip():
        raise ValueError("must not contain control characters or surrounding spaces")
    return value


Name = Annotated[StrictStr, AfterValidator(_name)]
Int = Annotated[int, Strict(), Field(le=MAX_INT)]  # int64 columns and tensors
Count = Annotated[int, Strict(), Field(ge=1, le=MAX_INT)]
Number = Annotated[float, Strict()]  # finite (allow_inf_nan=False); an integer is a number


def _distinct(values: list[float]) -> list[float]:
    seen: list[float] = []
    for j, v in enumerate(values):
        v += 0.0  # -0.0 is 0.0: one budget, one spelling in the results
        if v in seen:
            raise SpecError(f"[{j}]", values[j], "appears twice")
        seen.append(v)
    return seen


Epsilons = Annotated[
    list[Annotated[float, Strict(), Field(ge=0)]], Field(min_length=1), AfterValidator(_distinct)
]


class Section(BaseModel):
    """A spec section: frozen, no unknown keys, an alias never given with its key."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for info in cls.model_fields.values():
                if isinstance(info.validation_alias, AliasChoices):
                    given = [str(a) for a in info.validation_alias.choices if a in data]
                    if len(given) > 1:
                        raise SpecError(given[1], data[given[1]], f"give either {given[1]} or {given[0]}, not both")
        return data

    @classmethod
    def aliases(cls) -> dict[str, str]:
        """``{alias: key}`` of this section."""
        return {
            str(alias): key
            for key, info in cls.model_fields.items()
            if isinstance(info.validation_alias, AliasChoices)
            for alias in info.validation_alias.choices[1:]
        }


def _alias(key: str, *aliases: str) -> Any:
    return AliasChoices(key, *aliases)


class DatasetSection(Section):
    """``dataset:``. The keys after ``shard_size`` are the data registry's
    (:mod:`sweep.data.registry`, which checks them against the source named)."""

    name: Name | None = None
    samples: Count | None = Field(None, validation_alias=_alias("samples", "num_samples"))
    shard_size: Count = DEFAULT_SHARD_SIZE
    shuffle_seed: Any = None
    split: Any = None
    root: Any = None
    image_size: Any = None
    crop_size: Any = None
    extensions: Any = None
    channels: Any = None
    factory: Any = None
    kwargs: Any = None
    num_classes: Any = None

    @model_validator(mode="after")
    def _source(self) -> DatasetSection:
        if self.name is None and self.factory is None:
            raise SpecError("name", None, "is required (a built-in dataset, or give a factory)")
        return self


SWEEP_DATASET_KEYS: tuple[str, ...] = ("name", "samples", "shard_size")  # what the sweep reads


class ModelSection(Section):
    """One ``models:`` entry; :mod:`sweep.models.registry` checks what the keys after
    ``name`` and ``trusted`` hold once it knows where the weights come from."""

    name: Name
    trusted: StrictBool = False
    factory: Any = None
    kwargs: Any = None
    checkpoint: Any = None
    checkpoint_key: Any = None
    arch: Any = None
    mean: Any = None
    std: Any = None
    num_classes: Any = None


class TargetSpec(Section):
    """``attacks[i].targeted``: how each sample's target class is chosen (``targeted:
    least-likely`` is short for ``{mode: least-likely}``)."""

    mode: TargetMode
    targets: tuple[Annotated[int, Strict(), Field(ge=0, le=MAX_INT)], ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"mode": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _targets(self) -> TargetSpec:
        if self.mode == "explicit" and not self.targets:
            raise SpecError("targets", None, "explicit mode needs a list of target classes")
        if self.mode != "explicit" and self.targets:
            raise SpecError("targets", list(self.targets), f"only explicit mode takes targets (mode is {self.mode})")
        return self


class AttackSection(Section):
    """The keys of an ``attacks:`` entry besides its attack's hyper-parameters
    (:func:`sweep.spec.config.attack_section` adds those). A cascade entry (``cascade:``) is
    rewritten to the ``cascade`` attack with ``members`` before this model sees it."""

    name: StrictStr
    # no `| None` where null is a mistake: left out, the default applies
    label: Name = None
    norm: Any = None  # the attack's own declaration checks it
    targeted: TargetSpec | None = None
    epsilons: Epsilons = None
    strategy: Strategy = None

    @field_validator("targeted", mode="before")
    @classmethod
    def _untargeted(cls, value: Any) -> Any:
        return None if value is False else value


class ResourceSpec(Section):
    """``resources:``. ``gpus_per_cell=None`` means: 1 if the cluster has GPUs, else 0."""

    gpus_per_cell: Annotated[Number, Field(ge=0.0)] | None = Field(
        None, validation_alias=_alias("gpus_per_cell", "num_gpus"))
    cpus_per_cell: Annotated[Number, Field(ge=0.0)] = Field(
        DEFAULT_CPUS_PER_CELL, validation_alias=_alias("cpus_per_cell", "num_cpus"))
    max_workers: Count | None = None
    cells_in_flight_per_worker: Count = DEFAULT_CELLS_IN_FLIGHT
    models_per_worker: Count = DEFAULT_MODELS_PER_WORKER
    scale_timeout: Annotated[Number, Field(ge=1.0)] = DEFAULT_SCALE_TIMEOUT_S


def _tracking_uri(uri: str) -> str:
    if not uri.strip():
        raise ValueError("expected a URI string")
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme == "sqlite":
        # sqlite:///relative.db is relative to the CWD: pin it, so `sweep sync` run
        # from elsewhere finds the same store.
        prefix = "sqlite:///"
        if not uri.startswith(prefix):
            raise ValueError("expected sqlite:///path/to/mlflow.db")
        path = uri[len(prefix):]
        if not path.startswith("/"):
            path = str(Path.cwd() / path)
        return prefix + path
    if scheme in ("http", "https", "databricks"):
        return uri
    if scheme in ("", "file") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise ValueError(
            "MLflow >= 3.13 refuses the plain file store; use sqlite:///path/mlflow.db "
            "or an http(s):// tracking server"
        )
    return uri


class MlflowSpec(Section):
    """``mlflow:`` (``true`` / ``false``: enabled with the defaults / disabled).
    ``tracking_uri=None``: SQLite under ``<output>/_mlflow``."""

    enabled: StrictBool = True
    tracking_uri: Annotated[StrictStr, AfterValidator(_tracking_uri)] | None = None
    experiment: Annotated[StrictStr, AfterValidator(_nonblank)] | None = None


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty string")
    return value


class EpsilonSection(Section):
    """``epsilons:``, per norm."""

    # no `| None`: a norm left out has none, a norm written `l2: null` is a mistake
    linf: Epsilons = None
    l2: Epsilons = None
    l1: Epsilons = None
    l0: Epsilons = None


class AdversarialSpec(Section):
    """``adversarials:``: which adversarial images each cell stores next to its rows
    (``first_n``: those of the dataset's first ``n`` samples). Not part of the cell ids
    (the rows do not change); the manifest records what each cell stored."""

    keep: AdversarialKeep = DEFAULT_ADVERSARIAL_KEEP
    n: Count = DEFAULT_ADVERSARIAL_N

    def covers(self, stored: str | None) -> bool:
        """Whether a cell that stored ``stored`` (:meth:`tag` of its run) has what this
        setting asks for."""
        if self.keep == "none":
            return True
        if stored is None or stored == "none":
            return False
        if stored == "all":
            return True
        return self.keep == "first_n" and stored.startswith("first_n:") and int(stored[8:]) >= self.n

    def tag(self) -> str:
        """What a cell stores under this setting, as the manifest records it."""
        return f"first_n:{self.n}" if self.keep == "first_n" else self.keep


class TransferSpec(Section):
    """``transfer:``: evaluate the adversarials crafted on each source model on each
    target model (per attack and epsilon). ``attacks``: the labels to transfer (all
    if left out). Source models store every adversarial (``adversarials.keep`` is
    ``all`` for them)."""

    sources: Annotated[list[Name], Field(min_length=1)]
    targets: Annotated[list[Name], Field(min_length=1)]
    attacks: Annotated[list[Name], Field(min_length=1)] | None = None


class SpecSection(Section):
    """The whole spec, as written (the top level)."""

    name: Name
    seed: Annotated[Int, Field(ge=0)] = DEFAULT_SEED
    output: Any = None  # a folder or an object-store URI: sweep.spec.config checks it
    dataset: DatasetSection
    epsilons: EpsilonSection
    strategy: Strategy = DEFAULT_STRATEGY
    models: Annotated[list[ModelSection], Field(min_length=1)]
    attacks: Annotated[list[Mapping[Any, Any]], Field(min_length=1)]  # per attack: AttackSection+
    mlflow: MlflowSpec = MlflowSpec()
    batch_size: Count = DEFAULT_BATCH_SIZE
    resources: ResourceSpec = ResourceSpec()
    retries: Annotated[Int, Field(ge=0)] = DEFAULT_RETRIES
    precision: Precision = DEFAULT_PRECISION
    adversarials: AdversarialSpec = AdversarialSpec()
    transfer: TransferSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _required(cls, data: Any) -> Any:
        if isinstance(data, Mapping):  # `models:` left empty is as missing as no `models:`
            required = {k for k, f in cls.model_fields.items() if f.is_required()}
            data = {k: v for k, v in data.items() if v is not None or k not in required}
        return data

    @field_validator("adversarials", mode="before")
    @classmethod
    def _keep_shorthand(cls, value: Any) -> Any:
        """``adversarials: none | first_n | all`` is short for ``{keep: ...}``; ``false``: none."""
        if value is None or value is True:
            return {}
        if value is False:
            return {"keep": "none"}
        return {"keep": value} if isinstance(value, str) else value

    @field_validator("mlflow", "resources", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """``resources:`` left empty; ``mlflow: true`` / ``false``: enabled with the defaults / off."""
        if value is None or value is True:
            return {}
        return {"enabled": False} if value is False else value


