"""Hostile and broken spec files (issue 15, cases 1, 2, 3, 5, 10): each ends in one
line naming the key or the file and the value (cut short), exit code 2, within
seconds and bounded memory, with nothing written."""

from __future__ import annotations

import importlib
import time
import tracemalloc

import pytest
import yaml
from click.testing import CliRunner

from sweep.cli.main import cli
from sweep.errors import SpecError
from sweep.spec.config import load_spec
from tests.execution.specs import base_spec, write_spec

# imported now, so that the timings below measure no imports
for _module in ("sweep.cli.validate", "sweep.execution.pipeline"):
    importlib.import_module(_module)


def _validate(path) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    result = CliRunner().invoke(cli, ["validate", str(path)], catch_exceptions=False)
    return result.exit_code, result.output.strip(), time.perf_counter() - t0


def _spec_text(tmp_path, **overrides) -> str:
    return yaml.safe_dump(base_spec(tmp_path / "out", **overrides), sort_keys=False)


def _assert_refused(tmp_path, path, *needles: str, seconds: float = 5.0) -> str:
    code, out, took = _validate(path)
    assert code == 2, out
    assert out.startswith("error: ") and len(out.splitlines()) == 1, out[:2000]
    assert len(out) < 1200, f"{len(out)} characters echoed"
    for needle in needles:
        assert needle in out, f"{needle!r} not in {out!r}"
    assert took < seconds, f"took {took:.1f}s"
    assert not (tmp_path / "out").exists()
    return out


# -- case 1: alias bombs and huge files ---------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    """The classic: each level a list of nine aliases of the one below (9**9 strings)."""
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*lol{i - 1}"] * 9)
        lines.append(f"  lol{i}: &lol{i} [{refs}]")
    return "bomb:\n  " + "\n".join(lines).lstrip() + "\n"


def test_alias_bomb_under_an_unknown_key_answers_in_seconds_and_bounded_memory(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(_spec_text(tmp_path) + billion_laughs(), encoding="utf-8")
    tracemalloc.start()
    try:
        out = _assert_refused(tmp_path, path, "bomb", "values", "aliases")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"peak Python allocations {peak / 2**20:.0f} MiB"
    assert "lol" not in out.split("(got")[0] or len(out) < 400


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(_spec_text(tmp_path) + "loop: &x [1, *x]\n", encoding="utf-8")
    _assert_refused(tmp_path, path, "loop", "cycle")


@pytest.mark.parametrize("filler", ["comments", "value"])
def test_a_50_mb_spec_is_refused_unread(tmp_path, filler):
    """50 MB of comments got no answer in 90 s; a 50 MB value under an unknown key was
    echoed whole to stderr."""
    path = tmp_path / "spec.yaml"
    with path.open("w", encoding="utf-8") as f:
        f.write(_spec_text(tmp_path))
        if filler == "comments":
            line = "# " + "x" * 97 + "\n"
            f.write(line * (50 * 2**20 // len(line)))
        else:
            f.write("junk: " + "A" * (50 * 2**20) + "\n")
    out = _assert_refused(tmp_path, path, "error: spec:", "larger than 1 MiB", str(path), seconds=2.0)
    assert "AAAA" not in out


def test_a_large_value_under_an_unknown_key_is_not_echoed_whole(tmp_path):
    path = tmp_path / "spec.yaml"
    blob = "A" * 900_000  # under the size limit: parsed, then refused by key
    path.write_text(_spec_text(tmp_path) + f"junk: {blob}\n", encoding="utf-8")
    out = _assert_refused(tmp_path, path, "junk", "unknown key 'junk'")
    assert out.count("A") < 300


@pytest.mark.parametrize("value", ["!!float", "!!int", "!!bool", "!!timestamp", "!!binary x",
                                   "!!set [1]", "!!omap 1", "!!python/object:os.system {}", "9" * 5000])
def test_values_pyyaml_cannot_construct_are_one_line(tmp_path, value):
    """Found by the fuzz test: ``mode: !!float`` (empty) raised IndexError inside PyYAML."""
    path = tmp_path / "spec.yaml"
    path.write_text(_spec_text(tmp_path) + f"strategy: {value}\n", encoding="utf-8")
    code, out, _ = _validate(path)
    assert code == 2 and out.startswith("error: ") and len(out.splitlines()) == 1, out


def test_deep_nesting_is_one_line(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(_spec_text(tmp_path) + "deep: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    _assert_refused(tmp_path, path, "error: spec:")


# -- case 2: bytes that are not UTF-8 ------------------------------------------------------


@pytest.mark.parametrize("where", ["comment", "name"])
def test_non_utf8_bytes_name_the_line_and_byte(tmp_path, where):
    text = _spec_text(tmp_path).encode()
    if where == "comment":
        data = b"# \xff\xfe\n" + text
        needles = ("0xff", "line 1")
    else:  # Latin-1 e-acute in the name
        data = text.replace(b"name: t\n", b"name: caf\xe9\n", 1)
        needles = ("0xe9", "line 1")
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    _assert_refused(tmp_path, path, "error: spec:", "not UTF-8", *needles)


# -- case 3: numbers -----------------------------------------------------------------------


def test_a_310_digit_epsilon_is_refused_by_key(tmp_path):
    spec = base_spec(tmp_path / "out")
    spec["epsilons"]["linf"][1] = 10**309
    _assert_refused(tmp_path, write_spec(tmp_path / "spec.yaml", spec),
                    "epsilons.linf[1]", "finite number", "...")


def test_huge_integers_elsewhere_are_refused_by_key(tmp_path):
    for key, value in (("seed", 10**30), ("batch_size", 2**64)):
        spec = base_spec(tmp_path / "out", **{key: value})
        _assert_refused(tmp_path, write_spec(tmp_path / "spec.yaml", spec), key, "2**63 - 1")
    spec = base_spec(tmp_path / "out", resources={"cpus_per_cell": 10**400})
    _assert_refused(tmp_path, write_spec(tmp_path / "spec.yaml", spec), "resources.cpus_per_cell")


def test_exponent_without_a_dot_is_a_number(tmp_path):
    text = _spec_text(tmp_path).replace("- 0.1\n", "- 1e-3\n", 1).replace("- 0.3\n", "- 3E-1\n", 1)
    assert "1e-3" in text and "3E-1" in text
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path)
    assert spec.epsilons["linf"] == (0.0, 0.001, 0.3)
    # integers, strings and YAML 1.1 floats read as before
    assert yaml.load("[1, 1_000, 0x1f, 1.5, .5, -.inf, 1e3x, 0.1e2]", Loader=_loader()) == [
        1, 1000, 31, 1.5, 0.5, float("-inf"), "1e3x", 10.0,
    ]


def _loader():
    from sweep.spec.reader import SpecLoader

    return SpecLoader


def test_safe_loader_is_left_alone():
    _loader()
    assert yaml.safe_load("a: 1e-3")["a"] == "1e-3"  # only our loader reads YAML 1.2 floats


def test_negative_zero_is_zero(tmp_path):
    spec = base_spec(tmp_path / "out")
    spec["epsilons"]["linf"] = [-0.0, 0.1]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    eps = load_spec(path).epsilons["linf"]
    assert eps == (0.0, 0.1) and str(eps[0]) == "0.0"
    spec["epsilons"]["linf"] = [0.0, -0.0]
    with pytest.raises(SpecError, match=r"epsilons.linf\[1\].*appears twice"):
        load_spec(write_spec(path, spec))


# -- case 5: names too long for a folder ---------------------------------------------------


def test_forty_emoji_model_name_is_bad_input(tmp_path):
    spec = base_spec(tmp_path / "out")
    spec["models"][1]["name"] = "🙂" * 40
    _assert_refused(tmp_path, write_spec(tmp_path / "spec.yaml", spec),
                    "models[1].name", "bytes once percent-encoded", "255")


def test_long_attack_label_and_sweep_name_are_bad_input(tmp_path):
    spec = base_spec(tmp_path / "out")
    spec["attacks"][0]["label"] = "é" * 60
    _assert_refused(tmp_path, write_spec(tmp_path / "spec.yaml", spec), "attacks[0].label", "255")
    spec = base_spec(tmp_path / "out")
    del spec["output"]
    spec["name"] = "模" * 100  # the default output runs/<name>: 300 bytes
    _assert_refused(tmp_path, write_spec(tmp_path / "spec.yaml", spec), "output", "300 bytes")


# -- case 10: duplicate keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t + "name: other\n", "name"),
        (lambda t: t.replace("  draws: 2\n", "  draws: 2\n  draws: 3\n", 1), "attacks[0].draws"),
        (lambda t: t.replace("  shard_size: 8\n", "  shard_size: 8\n  shard_size: 4\n"),
         "dataset.shard_size"),
    ],
)
def test_duplicate_keys_are_bad_input(tmp_path, edit, field):
    path = tmp_path / "spec.yaml"
    text = edit(_spec_text(tmp_path))
    path.write_text(text, encoding="utf-8")
    _assert_refused(tmp_path, path, f"error: {field}:", "appears twice", "lines ")


def test_merge_keys_may_override(tmp_path):
    """``<<: *base`` then a key of the base is an override, not a duplicate."""
    text = _spec_text(tmp_path).replace(
        "- name: noise\n  draws: 2\n", "- &n {name: noise, draws: 2}\n", 1
    ).replace("- name: noise\n  label: noise-l2\n", "- <<: *n\n  label: noise-l2\n", 1)
    assert "<<: *n" in text, text
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path)
    assert [a.label for a in spec.attacks] == ["noise", "noise-l2"]


# -- case 11: specs that name factories are code -------------------------------------------


def test_validate_no_code_runs_no_factory(tmp_path, monkeypatch):
    """``factory: "os:system"`` ran a shell command during ``sweep validate``. A factory is
    code by design (documented: trust specs like scripts); ``--no-code`` checks the spec
    without importing or calling any."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran"
    spec = base_spec(tmp_path / "out")
    spec["models"].append({"name": "evil", "factory": "os:system",
                           "kwargs": {"command": f"touch {marker}"}})
    path = write_spec(tmp_path / "spec.yaml", spec)

    result = CliRunner().invoke(cli, ["validate", "--no-code", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert "not probed (runs code): models[2] (evil): factory 'os:system'" in result.output
    assert "= 12 cells" in result.output and "valid as far as checked" in result.output
    assert not (tmp_path / "out").exists()

    # a spec error is still found without running code
    spec["epsilons"]["linf"][1] = "8/255"
    bad = CliRunner().invoke(cli, ["validate", "--no-code", str(write_spec(path, spec))])
    assert bad.exit_code == 2 and "epsilons.linf[1]" in bad.output and not marker.exists()

    # without --no-code, validate probes the model, so it runs the factory: as documented
    spec["epsilons"]["linf"][1] = 0.1
    probed = CliRunner().invoke(cli, ["validate", str(write_spec(path, spec))])
    assert probed.exit_code == 2 and "models[2]" in probed.output
    assert marker.exists()


def test_readme_says_specs_with_factories_are_code():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "trust a spec as you would trust a script" in " ".join(readme.split()).lower()
    assert "--no-code" in readme
