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
from collections.abc import Callable
from typing import Annotated, Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from sweep.errors import SpecError
from sweep.validation.messages import dotted, explain

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
    return create_model(f"{init.__qualname__.split('.')[0]}Params", __config__=CONFIG, **fields)


def check_params(attack: str, init: Callable[..., None], values: dict[str, Any]) -> None:
    """Raise :class:`ParamError` if ``values`` do not fit ``init``'s declaration."""
    model = params_model(init)
    try:
        model.model_validate(values)
    except ValidationError as exc:
        loc, value, message = explain(exc, model)
        raise ParamError(attack, dotted("", loc), value, message) from None


def checked(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` checking its arguments against its own declaration first (the signature
    is kept, so ``inspect.signature`` and ``repr`` still see the parameters)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs).arguments
        check_params(self.name, init, {k: v for k, v in bound.items() if k != "self"})
        init(self, *args, **kwargs)

    return wrapper
