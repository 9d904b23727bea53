"""The catalog (read from source, no torch) agrees with the imported attack classes, for
every registered attack; `sweep attacks` answers without importing torch; an attack's
repr shows its settings."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from sweep.attacks import attack_class, attack_params, available, create
from sweep.attacks.catalog import describe
from sweep.cli.main import cli


@pytest.mark.parametrize("name", available())
def test_catalog_matches_the_class(name: str) -> None:
    info, cls = describe(name), attack_class(name)
    assert (info.kind, info.norms, info.supports_targeted, info.uses_gradients) == (
        cls.kind, cls.norms, cls.supports_targeted, cls.uses_gradients)
    assert info.params == attack_params(name)
    assert info.arxiv.startswith("arXiv:") and info.arxiv in info.paper


@pytest.mark.parametrize("name", available())
def test_catalog_shows_what_the_constructor_checks(name: str) -> None:
    """What ``sweep attacks NAME`` says a parameter takes is read from the same
    declaration the constructor validates with (the annotated ``__init__``)."""
    import inspect

    from sweep.attacks.params import params_model
    from sweep.validation.messages import accepted

    info, cls = describe(name), attack_class(name)
    fields = params_model(inspect.unwrap(cls.__init__)).model_fields
    assert set(info.takes) == set(fields)
    for param, declared in fields.items():
        if param != "norm":
            assert info.takes[param] == accepted(declared.rebuild_annotation()), param
    assert info.takes["norm"] == "one of " + ", ".join(cls.norms)


@pytest.mark.parametrize("name", available())
def test_every_parameter_and_every_none_default_is_explained(name: str) -> None:
    info = describe(name)
    for param, default in info.params.items():
        assert info.meaning(param), f"{name}.{param} has no Args: entry"
        if default is None and param != "norm":
            assert "default" in info.meaning(param).lower(), (name, param, info.meaning(param))
    assert info.meaning("norm").startswith(f"default None: {info.norms[0]}")


@pytest.mark.parametrize("name", available())
def test_repr_shows_every_setting(name: str) -> None:
    text = repr(create(name))
    for param in attack_params(name):
        assert f"{param}=" in text
    assert "steps=7" in repr(create("pgd", steps=7)) and "rel_stepsize=" in repr(create("pgd"))


def test_attack_detail_names_the_paper_and_the_none_defaults() -> None:
    res = CliRunner().invoke(cli, ["attacks", "pgd"])
    assert res.exit_code == 0
    assert "arXiv:1706.06083" in res.output and "Madry" in res.output
    assert "default None: linf" in res.output and "2.5 / steps" in res.output
    assert "an integer >= 1" in res.output and "one of ce, margin, dlr" in res.output
    bad = CliRunner().invoke(cli, ["attacks", "pgx"])
    assert bad.exit_code == 2 and "did you mean 'pgd'" in bad.stderr


def test_listing_imports_no_torch() -> None:
    code = (
        "import sys, time, json; t = time.process_time(); from click.testing import CliRunner; "
        "from sweep.cli.main import cli; r1 = CliRunner().invoke(cli, ['attacks']); "
        "r2 = CliRunner().invoke(cli, ['attacks', 'cw']); r3 = CliRunner().invoke(cli, ['--help']); "
        "print(json.dumps({'torch': 'torch' in sys.modules, 'codes': [r1.exit_code, r2.exit_code, "
        "r3.exit_code], 'cpu_s': time.process_time() - t, 'apgd': 'arXiv:2003.01690' in r1.output}))"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["codes"] == [0, 0, 0] and got["apgd"]
    assert got["torch"] is False, "listing attacks imported torch"
    print(f"\nsweep attacks + attacks cw + --help in one process: {got['cpu_s']:.2f}s CPU, "
          f"{wall:.2f}s wall with interpreter start")
