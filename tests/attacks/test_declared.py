"""The torch-free check of an attack entry (:func:`sweep.attacks.declared.resolve`) and
constructing the class agree, entry by entry: on accept or reject, on the error's type,
field, value and message, and on an accepted entry's norm, kind, targeted mode and
defaults. The corpus: every registered attack with its defaults, every norm (and an
unknown one), every parameter at values from a pool that each declaration accepts some
of and rejects others of, the rules between parameters broken and kept, cascades and
AutoAttack with good and bad members."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sweep.attacks.catalog import readable
from sweep.attacks.declared import hyper_params, resolve
from sweep.attacks.params import MemberError, ParamError
from sweep.attacks.registry import attack_class, attack_params, available
from sweep.validation.names import NORMS

# values every declaration accepts some of and rejects others of (type, bound, literal)
POOL: tuple[Any, ...] = (
    None, True, False, 0, 1, 2, 3, 9, -1, 0.0, 1e-3, 0.05, 0.5, 0.95, 1.0, 1.05, 2.0, 100.0,
    math.nan, math.inf, "ce", "dlr", "x", "standard", "plus", "rand", "uniform", "gaussian",
    [], ["apgd"], {"a": 1},
)

RULES: list[tuple[str, str | None, dict[str, Any]]] = [
    ("pgd", None, {"rel_stepsize": 0.1, "step_size": 0.1}),
    ("pgd", "l0", {"rel_stepsize": 0.1, "step_size": 0.1}),  # the norm is blamed first
    ("pgd", "l2", {"step_size": 0.1}),
    ("pgd", None, {"rel_stepsize": 0.1, "step_size": None}),
    ("fmn", None, {"alpha_init": 0.5, "alpha_final": 0.6}),
    ("fmn", None, {"alpha_init": 0.5, "alpha_final": 0.5}),
    ("fmn", None, {"alpha_init": 0.5}),
    ("fmn", None, {"gamma_init": 0.01, "gamma_final": 0.02}),
    ("fmn", None, {"alpha_init": 0.5, "alpha_final": 0.6, "gamma_init": 0.01, "gamma_final": 0.02}),
    ("apgd", "l1", {"large_eps": True, "steps": 2}),
    ("apgd", "l1", {"large_eps": True, "steps": 3}),
    ("apgd", "linf", {"large_eps": True}),
    ("apgd", "linf", {"large_eps": False, "steps": 1}),
    ("apgd-t", "l1", {"large_eps": True, "steps": 2}),
    ("apgd-t", "l1", {"large_eps": True}),
    ("fab-t", None, {"n_target_classes": 0}),
    ("fab-t", None, {"n_target_classes": 1}),
    ("fab", None, {"n_target_classes": 0}),
    ("fgsm", "l2", {"loss": "dlr"}),
]

MEMBERS: list[Any] = [
    None, [], "apgd", ["apgd"], ["apgd", "apgd"], ["apgd", {"name": "apgd", "label": "b"}],
    [{"name": "pgd", "steps": 0}], [{"name": "pgd", "label": "p", "bogus": 1}], ["nope"],
    [{"label": "x"}], [3], [{"name": 3}], [{"name": "apgd", "norm": "l2"}], [{"name": "apgd", "norm": "linf"}],
    ["cascade"], ["autoattack"], [{"name": "cascade", "members": []}],
    [{"name": "cascade", "members": ["apgd"]}], [{"name": "autoattack", "version": "bogus"}],
    [{"name": "pgd", "rel_stepsize": 0.1, "step_size": 0.1}], ["onepixel"], ["square", "fab-t", "apgd-t"],
    [{"name": "apgd", "large_eps": True, "steps": 2}], [{"name": "fmn", "alpha_final": 9.0}],
    ["deepfool", {"name": "deepfool", "label": "deepfool"}], [{"name": "pgd", "label": 5}],
]


def outcome(call: Any) -> tuple[Any, ...]:
    """``("ok", norm, kind, targeted, has_members)`` or the error, field by field."""
    try:
        got = call()
    except ParamError as exc:
        return ("ParamError", exc.attack, exc.field, repr(exc.value), exc.message, str(exc))
    except MemberError as exc:
        cause = exc.cause and (exc.cause.attack, exc.cause.field, repr(exc.cause.value), exc.cause.message)
        return ("MemberError", exc.index, exc.label, exc.detail, cause, str(exc))
    except Exception as exc:  # any other error must match too
        return (type(exc).__name__, str(exc))
    return ("ok", got.norm, got.kind, got.supports_targeted, got.has_members)


def agree(name: str, norm: str | None, params: dict[str, Any]) -> tuple[Any, ...]:
    constructed = outcome(lambda: attack_class(name)(norm=norm, **params))
    declared = outcome(lambda: resolve(name, norm, params))
    assert declared == constructed, (name, norm, params)
    return declared


def corpus(name: str) -> list[tuple[str | None, dict[str, Any]]]:
    entries: list[tuple[str | None, dict[str, Any]]] = [(None, {})]
    entries += [(norm, {}) for norm in (*NORMS, "l3", 2)]
    for param in hyper_params(name):
        if param != "norm":
            entries += [(None, {param: value}) for value in POOL]
    return entries


@pytest.mark.parametrize("name", available())
def test_every_attack_is_read_torch_free(name: str) -> None:
    assert readable(name) is not None
    assert hyper_params(name) == attack_params(name)


@pytest.mark.parametrize("name", available())
def test_declared_and_constructed_agree(name: str) -> None:
    results = [agree(name, norm, params) for norm, params in corpus(name)]
    # the corpus does what it is for: both accepts and rejects
    assert any(r[0] == "ok" for r in results) and any(r[0] != "ok" for r in results)


@pytest.mark.parametrize(("name", "norm", "params"), RULES)
def test_rules_between_parameters_agree(name: str, norm: str | None, params: dict[str, Any]) -> None:
    agree(name, norm, params)


@pytest.mark.parametrize("norm", [None, "linf", "l2", "l1", "l0"])
@pytest.mark.parametrize("members", MEMBERS)
def test_cascade_members_agree(members: Any, norm: str | None) -> None:
    agree("cascade", norm, {} if members is None else {"members": members})


@pytest.mark.parametrize("norm", [None, "linf", "l2", "l1"])
@pytest.mark.parametrize("version", ["standard", "plus", "rand"])
@pytest.mark.parametrize("scale", [0.001, 0.02, 0.03, 0.5, 1.0])
def test_autoattack_presets_agree(version: str, norm: str | None, scale: float) -> None:
    agree("autoattack", norm, {"version": version, "scale": scale})


def test_the_corpus_breaks_each_rule() -> None:
    """Each declared rule is broken somewhere in RULES, so each is compared."""
    broken = {(name, str(r[2])) for name, norm, params in RULES
              if (r := agree(name, norm, params))[0] == "ParamError"}
    assert {("pgd", "step_size"), ("fmn", "alpha_final"), ("fmn", "gamma_final"),
            ("apgd", "large_eps"), ("apgd-t", "large_eps"), ("fab-t", "n_target_classes")} <= broken


def test_an_attack_the_catalog_cannot_read_is_constructed(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Without the catalog (as for a class it cannot read whole) the spec constructs each
    attack, and gets the same records."""
    import sweep.attacks.declared as declared
    from sweep.spec.config import parse_spec
    from tests.spec.test_ids_unchanged import ATTACKS

    raw = {"name": "t", "output": str(tmp_path), "dataset": {"name": "digits"},
           "models": [{"name": "digits-cnn"}], "attacks": ATTACKS,
           "epsilons": {"linf": [0.1], "l2": [1.0], "l1": [5.0], "l0": [1.0]}}
    read = parse_spec(raw).attacks
    monkeypatch.setattr(declared, "readable", lambda name: None)
    built = parse_spec(raw).attacks
    assert read == built and [a.params for a in read] == [a.params for a in built]
    assert [a.identity for a in read] == [a.identity for a in built]
