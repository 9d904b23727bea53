"""An attack entry checked from its declaration, without importing the attack (torch).

The spec's validation (:mod:`sweep.spec.config`) needs to know whether an attack takes
an entry's hyper-parameters, which norm it resolves to, its kind and whether it has a
targeted mode. Constructing the class tells, but importing any attack imports torch
(seconds, for ``sweep plan``). Everything the constructor checks is declared (the
annotated ``__init__``, ``norms``, ``checks``: :mod:`sweep.attacks.params`; a cascade's
member rules: :mod:`sweep.attacks.members`) and :mod:`sweep.attacks.catalog` reads it
from the source, so :func:`resolve` applies the same checks in the same order and
raises the same errors. An attack the catalog cannot read whole is constructed as
before. ``tests/attacks/test_declared.py`` checks both ways agree on a corpus of entries.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sweep.attacks import members
from sweep.attacks.catalog import readable
from sweep.attacks.params import apply_checks, check_values, fields_model, supported_norm
from sweep.attacks.registry import attack_params, location, unknown_params


@dataclass(frozen=True)
class Resolved:
    """What an accepted entry is: its norm (``None`` resolved), kind, whether it takes
    ``targets=``, and whether it is made of members."""

    norm: str
    kind: str
    supports_targeted: bool
    has_members: bool


def hyper_params(name: str) -> dict[str, Any]:
    """:func:`sweep.attacks.registry.attack_params` of ``name``, from the source where the
    catalog reads it (no torch)."""
    info = readable(name)
    return dict(info.params) if info is not None else attack_params(name)


def resolve(name: str, norm: str | None, params: Mapping[str, Any]) -> Resolved:
    """``name(norm=norm, **params)``'s norm, kind and targeted mode, or the error its
    constructor raises (:class:`~sweep.attacks.params.ParamError`,
    :class:`~sweep.attacks.params.MemberError`, ...). ``params`` are parameters of
    ``name`` (the caller checked the names)."""
    info = readable(name)
    if info is None:  # only the class itself can tell
        from sweep.attacks.registry import attack_class

        attack = attack_class(name)(norm=norm, **params)
        return Resolved(attack.norm, attack.kind, attack.supports_targeted, attack.has_members)
    # as sweep.attacks.params.checked: the declaration, the norm, the rules
    check_values(info.name, _model(info.name), {"norm": norm, **params})
    args = {k: v for k, v in info.params.items() if v is not inspect.Parameter.empty}
    args.update(params, norm=supported_norm(info.name, info.norms, norm))
    apply_checks(info.name, info.checks, args)
    if info.has_members:  # as the cascade's constructor: each member, in order
        members.build(args["norm"], members.entries_of(info.preset, args), _member)
    return Resolved(args["norm"], info.kind, info.supports_targeted, info.has_members)


def _member(name: str, norm: str, params: dict[str, Any]) -> Resolved:
    """One cascade member, as :func:`sweep.attacks.registry.create` would build it."""
    location(name)  # an unknown name: UnknownAttackError, as create raises
    unknown_params(name, params, hyper_params(name))
    return resolve(name, norm, params)


@functools.cache
def _model(name: str) -> type[BaseModel]:
    """The pydantic model of ``name``'s signature, from the catalog's reading."""
    info = readable(name)
    assert info is not None
    fields = {
        p: (info.annotations[p], ... if default is inspect.Parameter.empty else default)
        for p, default in info.params.items()
    }
    return fields_model(location(name)[1], fields)  # the name says nothing in messages
