"""Reading model checkpoints safely and fitting their weights to a network.

Security: a PyTorch checkpoint is a pickle, and unpickling runs whatever code
the file asks for. So checkpoints are read with ``torch.load(...,
weights_only=True)`` (tensors, plain containers and numbers only) unless the
spec says ``trusted: true`` for that model. A refused file is reported with the
Python object it tried to load and what to do about it.

Layouts understood (the common ones in the wild):

- a bare ``state_dict`` (``torch.save(model.state_dict(), path)``);
- a training checkpoint dict holding it under ``state_dict`` (Lightning, timm),
  ``model_state_dict``, ``model`` (DeiT, torchvision's reference scripts),
  ``net``, ``network``, ``module``, or an EMA copy (``ema``, ``model_ema``,
  ``state_dict_ema``) -- in that order of preference; ``checkpoint_key`` picks
  one explicitly;
- a whole pickled ``nn.Module`` or a TorchScript archive (``trusted: true`` only);
- key prefixes added by wrappers: ``module.`` (DataParallel /
  DistributedDataParallel), ``_orig_mod.`` (``torch.compile``), and one common
  leading component (e.g. Lightning's ``model.``), as well as the reverse (a
  bare net's weights loaded into a wrapped one). The variant that matches the
  network's own keys best is used, and it must match exactly.

Mismatches are errors, never silently skipped: a partly loaded network would
produce robustness numbers for a model nobody trained.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sweep.errors import SpecError

# Where training checkpoints keep their weights, most specific first; EMA copies
# last so that the trained weights win when both are present.
STATE_DICT_KEYS: tuple[str, ...] = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "module",
    "ema",
    "model_ema",
    "state_dict_ema",
)

# Prefixes that wrappers add to every key.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

# How many missing / unexpected keys an error message names.
SHOWN_KEYS = 5


def read_checkpoint(path_value: Any, trusted: bool, field: str) -> Any:
    """``torch.load`` the file at ``path_value`` on the CPU; ``weights_only`` unless ``trusted``.

    ``field`` is the spec field holding the path (e.g. ``models[1].checkpoint``).
    """
    if not isinstance(path_value, str | os.PathLike) or not str(path_value):
        raise SpecError(field, path_value, "expected the path of a checkpoint file")
    path = Path(os.path.expanduser(os.fspath(path_value)))
    if not path.exists():
        raise SpecError(field, path_value, f"checkpoint file not found ({path.resolve()})")
    if not path.is_file():
        raise SpecError(field, path_value, "is not a file; expected a file written by torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        # "holds Python objects" only when the unpickler met one (a GLOBAL it refused);
        # random or damaged bytes also fail inside the weights-only unpickler
        if not trusted and "Weights only load failed" in str(exc) and _refused_global(exc):
            trusted_field = field.rsplit(".", 1)[0] + ".trusted" if "." in field else "trusted"
            raise SpecError(
                field,
                path_value,
                f"refused to unpickle: the file holds {_refused_object(exc)}, not just tensors, and "
                "loading it would run code named by the file. If you trust where it came from, set "
                f"`trusted: true` ({trusted_field}); better, re-save it as plain weights with "
                "torch.save(model.state_dict(), path)",
            ) from exc
        raise SpecError(field, path_value, _unreadable(exc)) from exc
    except Exception as exc:  # corrupt, truncated, not a torch file, missing class, ...
        if not trusted and "TorchScript" in str(exc):
            raise SpecError(
                field,
                path_value,
                "is a TorchScript archive: it carries code, so it is loaded only with "
                "`trusted: true` (or export a state_dict instead)",
            ) from exc
        raise SpecError(field, path_value, _unreadable(exc)) from exc


def _refused_global(exc: Exception) -> str | None:
    """The Python object a weights-only load refused (``Unsupported global: GLOBAL x``)."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    return found.group(1) if found else None


def _refused_object(exc: Exception) -> str:
    return f"a Python object ({_refused_global(exc)})"


def _unreadable(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # torch's weights-only message opens with advice about weights_only; the cause
    # ("Unsupported operand 229" for random bytes) is further down
    first_line = next((line for line in lines if line.startswith("Unsupported")), lines[0] if lines else "")
    return (
        "not a readable PyTorch checkpoint (expected a file written by torch.save, holding a "
        f"state_dict): {type(exc).__name__}: {first_line[:300]}"
    )


def is_state_dict(value: Any) -> bool:
    """A non-empty mapping of string keys to tensors (``_extra_state`` entries allowed)."""
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(
            isinstance(k, str) and (isinstance(v, Tensor) or k.endswith("_extra_state"))
            for k, v in value.items()
        )
    )


def find_state_dict(obj: Any, key: str | None, field: str, key_field: str) -> dict[str, Any]:
    """The weights inside a loaded checkpoint (see the module docstring for layouts).

    ``key`` is the spec's ``checkpoint_key`` (``None``: look in the usual places).
    """
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, Mapping):
        raise SpecError(
            field, type(obj).__name__, "expected a state_dict (a mapping of names to tensors)"
        )
    if key is not None:
        if key not in obj:
            raise SpecError(key_field, key, f"not in the checkpoint; its keys: {_key_list(obj)}")
        found = obj[key]
        if isinstance(found, nn.Module):
            return found.state_dict()
        if not is_state_dict(found):
            raise SpecError(key_field, key, "this entry is not a state_dict (names -> tensors)")
        return dict(found)
    if is_state_dict(obj):
        return dict(obj)
    for candidate in STATE_DICT_KEYS:
        found = obj.get(candidate)
        if isinstance(found, nn.Module):
            return found.state_dict()
        if is_state_dict(found):
            return dict(found)
    raise SpecError(
        field,
        _key_list(obj),
        "found no state_dict in the checkpoint (looked at the top level and under "
        f"{', '.join(STATE_DICT_KEYS)}); name the entry holding the weights with checkpoint_key",
    )


def _key_list(obj: Mapping[Any, Any]) -> str:
    keys = [str(k) for k in obj]
    return ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")


def _strip(prefix: str) -> Callable[[str], str]:
    return lambda k: k[len(prefix) :] if k.startswith(prefix) else k


def _common_head(keys: list[str]) -> str | None:
    """The first dotted component shared by every key (``"model."``), if any."""
    heads = {k.split(".", 1)[0] for k in keys if "." in k}
    if len(heads) == 1 and all("." in k for k in keys):
        return heads.pop() + "."
    return None


def _key_variants(ckpt_keys: list[str], net_keys: list[str]) -> list[Callable[[str], str]]:
    """Candidate renamings of checkpoint keys, identity first."""
    variants: list[Callable[[str], str]] = [lambda k: k]
    for prefix in WRAPPER_PREFIXES:
        variants.append(_strip(prefix))
    variants.append(lambda k: _strip("_orig_mod.")(_strip("module.")(k)))
    variants.append(lambda k: _strip("module.")(_strip("_orig_mod.")(k)))
    head = _common_head(ckpt_keys)
    if head is not None:
        variants.append(_strip(head))
    net_head = _common_head(net_keys)  # a wrapped net (e.g. NormalizedModel's "net.")
    if net_head is not None:
        variants.append(lambda k: net_head + _strip("module.")(k))
    return variants


def fit_state_dict(
    net: nn.Module, state_dict: Mapping[str, Any], field: str, shape_hint: str = ""
) -> None:
    """Load ``state_dict`` into ``net``, exactly, after undoing wrapper key prefixes.

    Raises :class:`SpecError` (on ``field``) naming a few missing and unexpected
    keys and any shape mismatches; ``shape_hint`` is appended when shapes differ
    (e.g. "set num_classes").
    """
    net_state = net.state_dict()
    net_keys = list(net_state)
    ckpt_keys = list(state_dict)
    best: dict[str, Any] = dict(state_dict)
    best_overlap = -1
    for rename in _key_variants(ckpt_keys, net_keys):
        renamed = {rename(k): v for k, v in state_dict.items()}
        overlap = len(renamed.keys() & net_state.keys())
        if overlap > best_overlap:
            best, best_overlap = renamed, overlap

    # BatchNorm fills a missing num_batches_tracked itself (old checkpoints lack it).
    missing = [k for k in net_keys if k not in best and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in best if k not in net_state]
    mismatched = [
        f"{k}: checkpoint {list(best[k].shape)} vs model {list(net_state[k].shape)}"
        for k in net_keys
        if k in best and isinstance(best[k], Tensor) and best[k].shape != net_state[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append(
                f"{len(mismatched)} shape mismatch(es): {'; '.join(mismatched[:SHOWN_KEYS])}"
            )
        if missing:
            parts.append(f"{len(missing)} missing key(s): {', '.join(missing[:SHOWN_KEYS])}")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:SHOWN_KEYS])}"
            )
        message = "checkpoint does not fit the model: " + "; ".join(parts)
        if mismatched and shape_hint:
            message += f". {shape_hint}"
        raise SpecError(field, f"{len(ckpt_keys)} keys", message)
    try:
        net.load_state_dict(best, strict=True)
    except RuntimeError as exc:
        raise SpecError(
            field, f"{len(ckpt_keys)} keys", f"checkpoint does not fit the model: {exc}"
        ) from exc
