"""Fuzzing the spec loader (issue 15): whatever a spec file holds, ``load_spec`` returns a
spec or raises :class:`~sweep.errors.SpecError` with a one-line message of bounded
length, never another exception.

Three generators: random text, random bytes spliced into a valid spec, and valid
YAML specs whose values (at every key the parser reads) are replaced by random
YAML values (huge and negative numbers, NaN, odd strings, nested lists and maps).
The default suite runs the same few hundred examples of each every time; ``pytest
-m fuzz`` runs thousands of new ones (``SWEEP_FUZZ_EXAMPLES``, default 5000). It
found two bugs: mappings with keys of mixed types (``0`` and ``"a"``) crashed the
identity hash, and an empty ``!!float`` raised ``IndexError`` inside PyYAML.
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep.errors import SpecError
from sweep.spec.config import SweepSpec, load_spec
from tests.execution.specs import base_spec

DEFAULT_EXAMPLES = 300
MANY_EXAMPLES = int(os.environ.get("SWEEP_FUZZ_EXAMPLES", "5000"))

WORK = Path(tempfile.mkdtemp(prefix="sweep-fuzz-"))  # hypothesis and tmp_path do not mix
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
BASE = base_spec(WORK / "out")
BASE["models"][1] = {"name": "mine", "factory": "sweep.models.digits_cnn:build_digits_cnn",
                     "kwargs": {"num_classes": 10}}
BASE["attacks"][0]["targeted"] = {"mode": "explicit", "targets": [1, 2]}
BASE["resources"] = {"cpus_per_cell": 1, "max_workers": 2}
BASE_TEXT = yaml.safe_dump(BASE, sort_keys=False)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of the base spec (mapping keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE)
# places whose content the parser passes on rather than checks key by key: half the edits
FREE_FORM = [("models", 1, "kwargs"), ("models", 1, "kwargs", "num_classes"),
             ("attacks", 0, "targeted", "targets"), ("epsilons", "linf"), ("resources",)]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.sampled_from(["", " ", "-0.0", "1e-3", "8/255", "linf", "../..",
                                           "s3://b", "os:system", "模型🙂" * 40, "\x00"]),
    st.dates(), st.datetimes(), st.binary(max_size=8),  # YAML's !!timestamp and !!binary
)
# mapping keys YAML allows besides strings: numbers, booleans, null, dates
keys = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.booleans(), st.none(), st.dates(),
                 st.floats(allow_nan=False))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4),
    st.frozensets(st.integers(0, 3), max_size=3).map(set)),  # !!set
    max_leaves=12)


def _check(text: str | bytes) -> None:
    path = WORK / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        spec = load_spec(path)
    except SpecError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 1500, message[:3000]
        return
    assert isinstance(spec, SweepSpec)


@pytest.fixture(autouse=True)
def _in_work_dir(monkeypatch):
    monkeypatch.chdir(WORK)  # relative outputs land nowhere real


def _fuzz(examples: int, *, derandomize: bool = True):
    """Hypothesis settings: the default suite draws the same examples every run (a red
    test is a reproducible bug, never a flake); ``-m fuzz`` draws new ones each time."""
    return settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def edited_specs(draw) -> str:
    spec = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(FREE_FORM) | st.sampled_from(PATHS))
        node = spec
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier edit replaced a parent
    if draw(st.booleans()):
        spec[draw(keys)] = draw(values)
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=draw(st.booleans()))


@st.composite
def spliced_specs(draw) -> bytes:
    data = bytearray(BASE_TEXT.encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 8))
        data[at : at + cut] = draw(st.binary(max_size=12) | st.sampled_from(
            [b"&a ", b"*a", b"<<: *a\n", b": ", b"\n- ", b"[", b"{", b"\t", b"!!python/object:os.system ",
             b"\xff", b"1e400", b"9" * 400, b"!!binary ", b"? ", b"2020-01-01: ", b"3: ", b"!!set ",
             b"!!omap ", b"!!str ", b"!!float ", b"--- ", b"...\n", b"%YAML 1.1\n"]))
    return bytes(data)


@_fuzz(DEFAULT_EXAMPLES)
@given(st.text(max_size=200))
def test_random_text(text):
    _check(text)


@_fuzz(DEFAULT_EXAMPLES)
@given(spliced_specs())
def test_valid_spec_with_bytes_spliced_in(data):
    _check(data)


@_fuzz(DEFAULT_EXAMPLES)
@given(edited_specs())
def test_valid_spec_with_random_values(text):
    _check(text)


@pytest.mark.fuzz
@pytest.mark.slow
def test_many(request):
    """``pytest -m fuzz``: the three generators with MANY_EXAMPLES each."""
    if "fuzz" not in (request.config.option.markexpr or ""):
        pytest.skip("thousands of examples: run with -m fuzz")
    for strategy in (st.text(max_size=400), spliced_specs(), edited_specs()):
        _fuzz(MANY_EXAMPLES, derandomize=False)(given(strategy)(_check))()
