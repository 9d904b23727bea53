"""Model registry: spec entry -> frozen model that takes [0, 1] images and returns logits.

A model entry is a mapping. ``name`` (required) is the label used in results;
the weights come from exactly one source:

- ``name`` alone: a built-in (``digits-cnn``, ``digits-cnn-at``);
- ``arch`` (or a ``name`` that is a torchvision architecture, e.g. ``resnet18``)
  plus ``checkpoint``: ``torchvision.models.get_model(arch, weights=None,
  num_classes=num_classes, **kwargs)`` filled from a local state_dict;
- ``factory: "module:function"``: user code called with ``kwargs`` that returns
  an ``nn.Module``, optionally filled from ``checkpoint``;
- ``checkpoint`` alone with ``trusted: true``: a whole pickled ``nn.Module``.

Options: ``checkpoint`` (local path), ``checkpoint_key`` (which entry of a
training checkpoint holds the weights), ``trusted`` (default false: checkpoints
are read with ``weights_only=True``), ``num_classes`` (torchvision head size,
default 1000), ``mean`` / ``std`` (per-channel normalisation applied inside the
model, default none), ``kwargs`` (for ``arch`` or ``factory``).

Every user mistake is a :class:`~sweep.errors.SpecError` naming the dotted
field (``models[1].checkpoint``); the CLI turns it into exit code 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from sweep.errors import SpecError, close_match_hint
from sweep.factory import call_factory, check_kwargs
from sweep.models.checkpoint import find_state_dict, fit_state_dict, read_checkpoint
from sweep.models.digits_cnn import RECIPES, load_digits_model
from sweep.models.torchvision_models import (
    DEFAULT_NUM_CLASSES,
    adapt_torchvision_keys,
    build_torchvision,
    is_torchvision_architecture,
    pretrained_hint,
    torchvision_architectures,
)
from sweep.models.wrapper import NormalizedModel, freeze

BUILTIN_MODELS: tuple[str, ...] = tuple(RECIPES)

# The keys a model entry may carry are declared by the spec (sweep.spec.sections,
# sweep.spec.config.MODEL_KEYS), which checks them before an entry reaches this module.


def load_model(entry: Mapping[str, Any], field: str = "model") -> nn.Module:
    """Load the model a spec entry describes: frozen, in eval mode, on the CPU.

    The result takes ``[B, C, H, W]`` images in [0, 1] and returns logits; any
    ``mean`` / ``std`` normalisation happens inside it (:class:`NormalizedModel`).
    ``field`` is the entry's dotted spec path, used in error messages.
    """
    if not isinstance(entry, Mapping):
        raise SpecError(field, entry, "expected a mapping with at least `name`")

    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(
            f"{field}.name", name, "required: a non-empty string (the label used in results)"
        )
    arch = _optional_str(entry, "arch", field)
    factory = entry.get("factory")
    checkpoint = entry.get("checkpoint")
    if arch is not None and factory is not None:
        raise SpecError(f"{field}.factory", factory, "give either `arch` or `factory`, not both")
    trusted = entry.get("trusted", False)
    checkpoint_key = _optional_str(entry, "checkpoint_key", field)
    if checkpoint_key is not None and checkpoint is None:
        raise SpecError(
            f"{field}.checkpoint_key", checkpoint_key, "only makes sense with `checkpoint`"
        )
    num_classes = _optional_positive_int(entry, "num_classes", field)
    mean = _optional_floats(entry, "mean", field)
    std = _optional_floats(entry, "std", field)
    if std is not None and any(s <= 0 for s in std):
        raise SpecError(f"{field}.std", std, "every std must be > 0")
    if mean is not None and std is not None and len(mean) != len(std):
        raise SpecError(
            f"{field}.std", std, f"needs one value per channel, like mean ({len(mean)})"
        )
    kwargs = check_kwargs(entry.get("kwargs"), f"{field}.kwargs")

    weights = _Checkpoint(checkpoint, checkpoint_key, trusted, field)

    if factory is not None:
        if num_classes is not None:
            raise SpecError(
                f"{field}.num_classes", num_classes, "with `factory`, pass it inside `kwargs`"
            )
        net = _from_factory(factory, kwargs, weights, field)
    elif arch is not None:
        if not is_torchvision_architecture(arch):
            raise SpecError(
                f"{field}.arch", arch, f"not a torchvision architecture; {_suggest(arch)}"
            )
        net = _from_torchvision(arch, num_classes, kwargs, weights, field)
    elif name in BUILTIN_MODELS:
        # `trusted: false` is the default, harmless to repeat; anything else is a mistake.
        extra = [
            k
            for k, v in entry.items()
            if k != "name" and v is not None and (k, v) != ("trusted", False)
        ]
        if extra:
            raise SpecError(
                f"{field}.{extra[0]}",
                entry[extra[0]],
                f"built-in {name!r} brings its own weights and takes no options; to load your own "
                "weights into its architecture, give the entry another name, factory: "
                '"sweep.models.digits_cnn:build_digits_cnn" and checkpoint',
            )
        return load_digits_model(name)
    elif is_torchvision_architecture(name):
        net = _from_torchvision(name, num_classes, kwargs, weights, field)
    elif checkpoint is not None:
        for key in ("kwargs", "num_classes"):
            if key in entry:
                raise SpecError(f"{field}.{key}", entry[key], "only used with `arch` or `factory`")
        net = _pickled_module(weights)
    else:
        raise SpecError(
            f"{field}.name",
            name,
            f"unknown model; {_suggest(name)}; or describe it with `arch` + `checkpoint`, "
            "or `factory`",
        )
    return freeze(NormalizedModel(net.to("cpu"), mean, std))


class _Checkpoint:
    """The checkpoint options of one entry, read on demand."""

    def __init__(self, path: Any, key: str | None, trusted: bool, field: str) -> None:
        self.path, self.key, self.trusted = path, key, trusted
        self.field = f"{field}.checkpoint"
        self.key_field = f"{field}.checkpoint_key"

    def load(self) -> Any:
        return read_checkpoint(self.path, self.trusted, self.field)

    def state_dict(self) -> dict[str, Any]:
        return find_state_dict(self.load(), self.key, self.field, self.key_field)


def _from_factory(
    factory: Any, kwargs: dict[str, Any], weights: _Checkpoint, field: str
) -> nn.Module:
    net = call_factory(factory, kwargs, f"{field}.factory", f"{field}.kwargs")
    if not isinstance(net, nn.Module):
        raise SpecError(
            f"{field}.factory",
            factory,
            f"returned a {type(net).__name__}, expected a torch.nn.Module",
        )
    if weights.path is not None:
        fit_state_dict(net, weights.state_dict(), weights.field)
    return net


def _from_torchvision(
    arch: str, num_classes: int | None, kwargs: dict[str, Any], weights: _Checkpoint, field: str
) -> nn.Module:
    if weights.path is None:
        # An untrained network would give robustness numbers that mean nothing,
        # and weights are never downloaded: insist on a local checkpoint.
        raise SpecError(
            weights.field,
            None,
            f"torchvision architecture {arch!r} needs weights: give `checkpoint: PATH` to a "
            f"state_dict for it (attack-sweep never downloads weights). {pretrained_hint(arch)}",
        )
    classes = num_classes if num_classes is not None else DEFAULT_NUM_CLASSES
    net = build_torchvision(arch, classes, kwargs, f"{field}.kwargs")
    state = adapt_torchvision_keys(arch, weights.state_dict())
    fit_state_dict(
        net,
        state,
        weights.field,
        shape_hint=f"the classifier has num_classes={classes} outputs"
        + ("" if num_classes is not None else " (torchvision's default)")
        + "; set `num_classes` to match the checkpoint",
    )
    return net


def _pickled_module(weights: _Checkpoint) -> nn.Module:
    obj = weights.load()
    if isinstance(obj, nn.Module):
        return obj
    raise SpecError(
        weights.field,
        weights.path,
        "holds weights but no architecture: add `arch` (a torchvision name) or "
        '`factory: "module:function"` that builds the network',
    )


def _suggest(name: str) -> str:
    """ "did you mean" over built-ins and torchvision names, without listing all 80 of them."""
    choices = BUILTIN_MODELS + torchvision_architectures()
    hint = close_match_hint(name, choices)
    return (
        f"{hint}built-ins: {', '.join(BUILTIN_MODELS)}; or a torchvision architecture "
        "(resnet18, wide_resnet50_2, vit_b_16, ...)"
    )


def _optional_str(entry: Mapping[str, Any], key: str, field: str) -> str | None:
    value = entry.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise SpecError(f"{field}.{key}", value, "expected a non-empty string")
    return value


def _optional_positive_int(entry: Mapping[str, Any], key: str, field: str) -> int | None:
    value = entry.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise SpecError(f"{field}.{key}", value, "expected a positive integer")
    return value


def _optional_floats(entry: Mapping[str, Any], key: str, field: str) -> list[float] | None:
    value = entry.get(key)
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or not value
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
    ):
        raise SpecError(f"{field}.{key}", value, "expected a list of numbers, one per channel")
    return [float(v) for v in value]
