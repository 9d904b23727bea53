"""An attack made of members (:mod:`sweep.attacks.cascade`): the entries, their rules and
AutoAttack's presets, torch-free.

The rules a member list obeys (non-empty; each a name or a mapping with a name; the
cascade's one norm; unique labels; no nested cascade) are written once, in
:func:`build`, which takes how to make one member: the cascade constructs it
(:func:`sweep.attacks.registry.create`), the spec's validation checks it from the
source (:mod:`sweep.attacks.declared`) without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

from sweep.attacks.params import MemberError, ParamError

MemberEntry = str | Mapping[str, Any]

DEFAULT_MEMBERS: tuple[MemberEntry, ...] = (
    {"name": "apgd", "label": "apgd-ce", "loss": "ce"},
    {"name": "apgd", "label": "apgd-dlr", "loss": "dlr"},
)
"""APGD-CE then APGD-DLR: AutoAttack's two untargeted APGD runs (its ``rand``
version's members, without EOT)."""

Version = Literal["standard", "plus", "rand"]
VERSIONS: tuple[str, ...] = ("standard", "plus", "rand")


class Member(Protocol):
    """What :func:`build` needs to know of a made member."""

    @property
    def has_members(self) -> bool: ...


T = TypeVar("T", bound=Member)


def member_label(entry: MemberEntry) -> str:
    """A member's label: its ``label``, else its registry name."""
    if isinstance(entry, str):
        return entry
    return str(entry.get("label", entry.get("name", "?")))


def build(norm: str, entries: Any, make: Callable[[str, str, dict[str, Any]], T]) -> tuple[tuple[str, T], ...]:
    """``(label, make(name, norm, params))`` per member entry, in order.

    Raises:
        ParamError: no members.
        MemberError: a duplicate label, a nested cascade, or a member that rejects the
            norm or its parameters (it names the member, and the parameter if one is to blame).
    """
    if isinstance(entries, str | bytes) or not isinstance(entries, Sequence) or not entries:
        raise ParamError("cascade", "members", entries, "expected a non-empty list of attacks")
    out: list[tuple[str, T]] = []
    for j, entry in enumerate(entries):
        label = member_label(entry)
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            name = entry["name"]
            params = {k: v for k, v in entry.items() if k not in ("name", "label", "norm")}
            if entry.get("norm", norm) != norm:
                raise MemberError(j, label, f"has norm {entry['norm']!r}; a cascade has one norm ({norm})")
        else:
            raise MemberError(j, label, "expected an attack name or a mapping with a name")
        if label in (lb for lb, _ in out):
            raise MemberError(j, label, f"label {label!r} appears twice; give each a label")
        try:
            member = make(name, norm, params)
        except ParamError as exc:
            raise MemberError(j, label, str(exc), exc) from exc
        except ValueError as exc:
            raise MemberError(j, label, str(exc)) from exc
        if member.has_members:
            raise MemberError(j, label, "is itself a cascade; list its members")
        out.append((label, member))
    return tuple(out)


def preset_members(version: str, norm: str, scale: float = 1.0) -> list[dict[str, Any]]:
    """The members of AutoAttack ``version`` for ``norm``, as cascade member entries.

    ``scale`` multiplies every iteration and query budget (rounded, at least 1);
    only ``1.0`` is AutoAttack."""
    steps, queries = max(1, round(100 * scale)), max(1, round(5000 * scale))
    apgd_ce = {"name": "apgd", "label": "apgd-ce", "loss": "ce", "steps": steps}
    apgd_dlr = {"name": "apgd", "label": "apgd-dlr", "loss": "dlr", "steps": steps}
    apgd_t = {"name": "apgd-t", "label": "apgd-t", "n_target_classes": 9, "steps": steps, "restarts": 1}
    fab_t = {"name": "fab-t", "label": "fab-t", "n_target_classes": 9, "steps": steps, "restarts": 1}
    square = {"name": "square", "label": "square", "queries": queries, "restarts": 1}
    if version == "standard":
        if norm == "l1":  # the reference's use_largereps: 3 eps, 2 eps, then eps
            return [{**apgd_ce, "restarts": 5, "large_eps": True},
                    {**apgd_t, "n_target_classes": 5, "large_eps": True}, fab_t]
        return [{**apgd_ce, "restarts": 1}, apgd_t, fab_t, square]
    if version == "plus":
        fab = {"name": "fab", "label": "fab", "n_target_classes": 0, "steps": steps, "restarts": 5}
        return [{**apgd_ce, "restarts": 5}, {**apgd_dlr, "restarts": 5}, fab, square, apgd_t, fab_t]
    if version == "rand":
        return [{**apgd_ce, "restarts": 1, "eot_iter": 20}, {**apgd_dlr, "restarts": 1, "eot_iter": 20}]
    raise ValueError(f"autoattack: version must be one of {', '.join(VERSIONS)}, got {version!r}")


def entries_of(preset: str, args: Mapping[str, Any]) -> Sequence[MemberEntry]:
    """The member entries of an attack with members, from its resolved arguments: its
    ``members`` (default :data:`DEFAULT_MEMBERS`), or those of its class's ``preset``
    (``autoattack``: :func:`preset_members` of its version, norm and scale)."""
    if preset == "autoattack":
        return preset_members(args["version"], args["norm"], args["scale"])
    members = args.get("members")
    return DEFAULT_MEMBERS if members is None else members
