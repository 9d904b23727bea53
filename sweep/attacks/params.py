"""Attack hyper-parameters: declared once, in each attack's ``__init__`` signature.

An annotated signature is the declaration: its names and defaults (what
``attack_params``, :mod:`sweep.attacks.catalog` and ``sweep attacks`` show), its
types and bounds (``steps: Count = 100``, ``rho: Annotated[float, Field(gt=0, le=1)]``).
:class:`~sweep.attacks.base.Attack` checks every subclass's ``__init__`` arguments
against it before the body runs (strict: ``steps: 2.5`` or ``steps: "10"`` is an
error, as is NaN for a number), and the spec's validation (:mod:`sweep.spec.config`) reads
the same model, so a bad ``attacks[1].steps`` and ``PGD(steps=0)`` get the same words
from one formatter (:mod:`sweep.validation.messages`). What one declaration cannot say (two
parameters that exclude each other, a norm an attack does not support) the body
raises as a :class:`ParamError` naming the parameter. Torch-free.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from sweep.errors import SpecError
from sweep.validation.messages import dotted, explain
from sweep.validation.names import NORMS

# the common shapes; a bound used once is written where it is used
Count = Annotated[int, Field(ge=1)]  # steps, restarts, queries, ...
NonNegativeInt = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]  # finite: NaN and inf are refused for every number
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]  # (0, 1]

CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)


class ParamError(SpecError):
    """A hyper-parameter attack ``attack`` rejects: ``field`` names it (``steps``,
    ``members[1].norm``), so the spec reports it at ``attacks[i].<field>``."""

    def __init__(self, attack: str, field: str, value: Any, message: str) -> None:
        super().__init__(field, value, message)
        self.attack = attack
        self.args = (f"{attack}: {self.args[0]}",)


class MemberError(ValueError):
    """Member ``index`` (``label``) of a cascade is wrong; ``cause`` is the member's own
    :class:`ParamError` when a parameter is to blame."""

    def __init__(self, index: int, label: str, detail: str, cause: ParamError | None = None) -> None:
        super().__init__(f"cascade: members[{index}] ({label}): {detail}")
        self.index, self.label, self.detail, self.cause = index, label, detail, cause


@functools.cache
def params_model(init: Callable[..., None]) -> type[BaseModel]:
    """The pydantic model of an ``__init__``'s annotated signature (``self`` left out).

    A subclass outside this package whose annotations name what its module cannot
    resolve at run time (``if TYPE_CHECKING:`` imports) gets its parameter names checked
    only."""
    try:
        hints = get_type_hints(init, include_extras=True)
    except NameError:
        hints = {}
    fields: dict[str, Any] = {
        p.name: (hints.get(p.name, Any), ... if p.default is p.empty else p.default)
        for p in inspect.signature(init).parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    return fields_model(init.__qualname__.split(".")[0], fields)


def fields_model(class_name: str, fields: dict[str, tuple[Any, Any]]) -> type[BaseModel]:
    """The model of a signature given as ``param -> (annotation, default or ...)``: what
    :func:`params_model` builds from an imported ``__init__`` and the catalog from its source."""
    return create_model(f"{class_name}Params", __config__=CONFIG, **fields)


def check_params(attack: str, init: Callable[..., None], values: dict[str, Any]) -> None:
    """Raise :class:`ParamError` if ``values`` do not fit ``init``'s declaration."""
    check_values(attack, params_model(init), values)


def check_values(attack: str, model: type[BaseModel], values: Mapping[str, Any]) -> None:
    """Raise :class:`ParamError` if ``values`` do not fit ``model`` (:func:`fields_model`)."""
    try:
        model.model_validate(values)
    except ValidationError as exc:
        loc, value, message = explain(exc, model)
        raise ParamError(attack, dotted("", loc), value, message) from None


def supported_norm(attack: str, norms: Sequence[str], norm: str | None) -> str:
    """``norm`` (``None``: the first of ``norms``), or :class:`ParamError` if the attack
    does not support it."""
    norm = norms[0] if norm is None else norm
    if norm not in norms:
        known = "unknown norm" if norm not in NORMS else "norm not supported"
        raise ParamError(attack, "norm", norm, f"{known}; {attack} supports: {', '.join(norms)}")
    return norm


# -- what a signature cannot say: rules between parameters, declared as ``checks`` ----------
# Each rule is read from the source by sweep.attacks.catalog (literal arguments only) and
# evaluated on the arguments of the attack being built, defaults filled in and ``norm``
# resolved; a rule naming a parameter that attack does not take does not apply (FGSM
# inherits PGD's rule but fixes both step sizes).


@dataclass(frozen=True)
class Exclusive:
    """At most one of ``first`` and ``second`` is given (not ``None``); ``second`` is blamed."""

    first: str
    second: str

    def violation(self, args: Mapping[str, Any]) -> tuple[str, Any, str] | None:
        if args.get(self.first) is not None and args.get(self.second) is not None:
            return self.second, args[self.second], f"give {self.first} or {self.second}, not both"
        return None


@dataclass(frozen=True)
class AtMost:
    """``param``, when given, is at most parameter ``bound`` (``None`` means a default
    that the attack derives within the bound, e.g. FMN's ``alpha_init / 100``)."""

    param: str
    bound: str

    def violation(self, args: Mapping[str, Any]) -> tuple[str, Any, str] | None:
        value, bound = args.get(self.param), args.get(self.bound)
        if value is not None and bound is not None and value > bound:
            return self.param, value, f"must be <= {self.bound} ({bound})"
        return None


@dataclass(frozen=True)
class AtLeast:
    """Integer ``param``, when given, is at least ``minimum`` (where a subclass narrows
    what its base's annotation allows, e.g. FAB-T's ``n_target_classes``)."""

    param: str
    minimum: int

    def violation(self, args: Mapping[str, Any]) -> tuple[str, Any, str] | None:
        value = args.get(self.param)
        if value is not None and value < self.minimum:
            return self.param, value, f"expected an integer >= {self.minimum}"
        return None


@dataclass(frozen=True)
class Needs:
    """Switch ``flag``, when on, needs norm ``norm`` and ``param >= minimum``."""

    flag: str
    norm: str
    param: str
    minimum: int

    def violation(self, args: Mapping[str, Any]) -> tuple[str, Any, str] | None:
        value = args.get(self.flag)
        if value and (args.get("norm") != self.norm or args.get(self.param, self.minimum) < self.minimum):
            return self.flag, value, f"{self.flag} needs norm {self.norm!r} and {self.param} >= {self.minimum}"
        return None


Check = Exclusive | AtMost | AtLeast | Needs
CHECKS: tuple[type, ...] = (Exclusive, AtMost, AtLeast, Needs)  # what the catalog may read


def apply_checks(attack: str, checks: Sequence[Check], args: Mapping[str, Any]) -> None:
    """Raise :class:`ParamError` for the first rule of ``checks`` that ``args`` break."""
    for check in checks:
        found = check.violation(args)
        if found is not None:
            raise ParamError(attack, *found)


def checked(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` checking its arguments first: against its own declaration, then (when it
    is the ``__init__`` of the object's class, not a base's reached through ``super()``)
    the norm against the class's ``norms`` and its ``checks``. The signature is kept, so
    ``inspect.signature`` and ``repr`` still see the parameters."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        check_params(self.name, init, {k: v for k, v in bound.arguments.items() if k != "self"})
        if type(self).__init__ is wrapper:  # once, on the arguments the caller gave
            bound.apply_defaults()
            values = {k: v for k, v in bound.arguments.items() if k != "self"}
            values["norm"] = supported_norm(self.name, self.norms, values.get("norm"))
            apply_checks(self.name, type(self).checks, values)
        init(self, *args, **kwargs)

    return wrapper
