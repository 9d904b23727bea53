"""The one formatter: a pydantic :class:`~pydantic.ValidationError` -> what the user reads.

Sections of the spec (:mod:`sweep.spec.sections`) and attack hyper-parameters
(:mod:`sweep.attacks.params`) are validated by pydantic from their declarations;
this module turns the first error into today's words: the dotted path
(``attacks[1].steps``), what was expected, read from the declaration itself (type and
bounds: ``expected an integer >= 1``), and for unknown keys and choices a "did you
mean". :func:`spec_error` wraps that in a :class:`~sweep.errors.SpecError`, which
adds ``(got 'ten')``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from sweep.errors import SpecError, did_you_mean

MAX_INT = 2**63 - 1  # seeds and counts end up in int64 columns and tensors

_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "true or false"),  # before int: bool is an int
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
)


def spec_error(exc: ValidationError, model: type[BaseModel], where: str = "") -> SpecError:
    """The first error of ``exc`` (raised validating ``model`` at spec path ``where``)."""
    loc, value, message = explain(exc, model)
    return SpecError(dotted(where, loc), value, message)


def explain(exc: ValidationError, model: type[BaseModel]) -> tuple[tuple[str | int, ...], Any, str]:
    """``(loc, value, message)`` of the first error, with the message read from the
    declaration of the field it is about."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    owner, annotation, metadata = _locate(model, loc)
    if kind == "missing":
        return loc, None, "is required"
    if kind == "extra_forbidden":
        allowed = list(owner.model_fields) if owner is not None else []
        return loc, value, f"unknown key {loc[-1]!r}; {did_you_mean(str(loc[-1]), allowed)}"
    if kind in ("value_error", "assertion_error"):
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, SpecError):  # a check that names the key it is about
            return (*loc, cause.field), cause.value, cause.message
        return loc, value, str(cause or error["msg"])
    if kind == "literal_error":
        return loc, value, did_you_mean(str(value), [str(c) for c in get_args(annotation)])
    what = expectation(annotation, metadata, kind, value)
    return loc, value, f"expected {what}" if what else error["msg"]


def expectation(annotation: Any, metadata: Sequence[Any], kind: str = "", value: Any = None) -> str:
    """``an integer >= 1``, ``a number in (0, 1]``, ``a non-empty list``: what a field
    declared as ``annotation`` with constraints ``metadata`` takes ("" if unknown)."""
    origin = get_origin(annotation) or annotation
    words = next((w for t, w in _KINDS if isinstance(origin, type) and issubclass(origin, t)), "")
    if kind == "finite_number" or (kind == "float_type" and isinstance(value, int)
                                   and not isinstance(value, bool)):
        words = "a finite number"  # NaN, inf, or an integer no float holds
    elif isinstance(origin, type) and issubclass(origin, BaseModel | Mapping):
        return "a mapping (key: value)"
    elif isinstance(origin, type) and issubclass(origin, list | tuple | Sequence) and origin is not str:
        short = any(isinstance(m, at.MinLen) and m.min_length > 0 for m in metadata)
        return "a non-empty list" if short else "a list"
    if words == "a string" and any(isinstance(m, at.MinLen) and m.min_length > 0 for m in metadata):
        return "a non-empty string"
    return words + _range(metadata, kind) if words else ""


def accepted(annotation: Any) -> str:
    """What a field declared as ``annotation`` takes, for listings (``sweep attacks``):
    ``an integer >= 1``, ``one of ce, dlr``; "" if the declaration says nothing simple."""
    base, metadata = unpack(annotation)
    if get_origin(base) is Literal:
        return "one of " + ", ".join(str(c) for c in get_args(base))
    return expectation(base, metadata)


def _range(metadata: Sequence[Any], kind: str) -> str:
    lo = hi = None
    lo_incl = hi_incl = True
    for m in metadata:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Gt):
            lo, lo_incl = m.gt, False
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, at.Lt):
            hi, hi_incl = m.lt, False
    if hi == MAX_INT:  # a limit of the storage, not of the meaning: named only when hit
        if kind == "less_than_equal":
            return f" <= {MAX_INT} (2**63 - 1)"
        hi = None
    if lo is not None and hi is not None:
        return f" in {'[' if lo_incl else '('}{_num(lo)}, {_num(hi)}{']' if hi_incl else ')'}"
    if lo is not None:
        return f" {'>=' if lo_incl else '>'} {_num(lo)}"
    if hi is not None:
        return f" {'<=' if hi_incl else '<'} {_num(hi)}"
    return ""


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def dotted(where: str, loc: Sequence[str | int]) -> str:
    """``attacks[1]`` + ``("steps",)`` -> ``attacks[1].steps``; list indices as ``[i]``."""
    out = where
    for part in loc:
        if isinstance(part, int) or part.startswith("["):
            out += f"[{part}]" if isinstance(part, int) else part
        else:
            out += f".{part}" if out else part
    return out


def unpack(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[int, Field(ge=1)] | None`` -> ``(int, [Ge(1)])``: the type and its
    constraints, through ``Annotated``, ``Optional`` and pydantic's ``Field``."""
    metadata: list[Any] = []
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *extra = get_args(annotation)
            metadata += extra
        elif get_origin(annotation) in (Union, types.UnionType):
            kept = [a for a in get_args(annotation) if a is not type(None)]
            if len(kept) != 1:
                break
            annotation = kept[0]
        else:
            break
    flat: list[Any] = []
    for m in metadata:
        flat += m.metadata if isinstance(m, FieldInfo) else [m]
    return annotation, flat


def _locate(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[type[BaseModel] | None, Any, list[Any]]:
    """The model owning the last key of ``loc``, and that field's type and constraints."""
    owner: type[BaseModel] | None = None
    annotation: Any = model
    metadata: list[Any] = []
    for part in loc:
        annotation, _ = unpack(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            info = annotation.model_fields.get(str(part))
            if info is None:
                return owner, Any, []
            annotation, metadata = unpack(info.rebuild_annotation())
        elif get_origin(annotation) is Literal:
            break
        else:
            args = [a for a in get_args(annotation) if a is not Ellipsis]
            annotation, metadata = unpack(args[-1] if args else Any)  # list item, dict value
    return owner, annotation, metadata
