"""Bad input: one clear message naming the key and the value, exit code 2, nothing
written, Ray not started."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sweep.cli.main import cli
from tests.execution.specs import assert_spec_error, base_spec, write_spec


def _model(**entry):
    return lambda s: s["models"].append(entry)


def _set(path: str, value):
    def apply(s):
        *head, last = path.split(".")
        node = s
        for key in head:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return apply


DELETE = object()

# id -> (edit of the base spec, substrings the message must contain)
CASES = {
    "unknown-model": (_set("models.0.name", "digits-cn"), ["models[0].name", "'digits-cn'", "did you mean 'digits-cnn'"]),
    "unknown-attack": (_set("attacks.0.name", "noize"), ["attacks[0].name", "'noize'", "did you mean 'noise'"]),
    "unknown-dataset": (_set("dataset.name", "digts"), ["dataset.name", "'digts'", "did you mean 'digits'"]),
    "missing-key": (_set("models", DELETE), ["models", "is required"]),
    "wrong-type": (_set("batch_size", "big"), ["batch_size", "'big'", "integer"]),
    "unknown-top-key": (lambda s: s.update(epsilon={"linf": [0.1]}), ["epsilon", "did you mean 'epsilons'"]),
    "unknown-dataset-key": (_set("dataset.shard_sise", 4), ["dataset.shard_sise", "did you mean 'shard_size'"]),
    # moved from tests/data and tests/models: the spec checks the keys, the registries do not
    "dataset-key-typo": (_set("dataset.spilt", "test"), ["dataset.spilt", "did you mean 'split'"]),
    "model-key-typo": (_model(name="x", checkpont="w.pt"), ["models[2].checkpont", "did you mean 'checkpoint'"]),
    "model-trusted-not-bool": (_model(name="x", factory="sweep.models.digits_cnn:build_digits_cnn",
                                      trusted="yes"), ["models[2].trusted", "'yes'", "true or false"]),
    "unknown-attack-param": (_set("attacks.0.drawz", 3), ["attacks[0].drawz", "did you mean 'draws'"]),
    "wrong-typed-param": (_set("attacks.0.draws", "ten"), ["attacks[0].draws", "'ten'", "integer"]),
    "bad-param-value": (_set("attacks.0.draws", 0), ["attacks[0].draws", "(got 0)", ">= 1"]),
    "negative-epsilon": (_set("epsilons.linf.1", -0.1), ["epsilons.linf[1]", "-0.1", ">= 0"]),
    "non-numeric-epsilon": (_set("epsilons.linf.1", "8/255"), ["epsilons.linf[1]", "'8/255'", "number"]),
    "unknown-norm": (_set("epsilons.linf2", [0.1]), ["epsilons.linf2", "did you mean 'linf'"]),
    "no-epsilons-for-norm": (_set("epsilons.l2", DELETE), ["epsilons.l2", "noise-l2", "l2"]),
    "unsupported-norm": (_set("attacks.0.norm", "l0"), ["attacks[0].norm", "'l0'", "linf"]),
    "duplicate-label": (_set("attacks.1.label", "noise"), ["attacks[1].label", "'noise'", "duplicates"]),
    "duplicate-model": (_set("models.1.name", "digits-cnn"), ["models[1].name", "duplicates"]),
    "bad-strategy": (_set("strategy", "incrementl"), ["strategy", "'incrementl'", "did you mean 'incremental'"]),
    "bad-target-mode": (_set("attacks.0.targeted", {"mode": "randon"}), ["attacks[0].targeted.mode", "'randon'"]),
    "target-out-of-range": (_set("attacks.0.targeted", {"mode": "explicit", "targets": [3, 12]}),
                            ["attacks[0].targeted.targets[1]", "12", "10 classes"]),
    "missing-checkpoint": (_model(name="mine", factory="sweep.models.digits_cnn:build_digits_cnn",
                                  checkpoint="no/such/weights.pt"),
                           ["models[2].checkpoint", "no/such/weights.pt", "no such file"]),
    "output-mismatch": (_model(name="five", factory="tests.execution.toy_models:five_classes"),
                        ["models[2]", "'five'", "(1, 5)", "10 classes"]),
    "model-raises-on-probe": (_model(name="broken", factory="tests.execution.toy_models:always_raises"),
                              ["models[2]", "'broken'", "wrong input shape"]),
    "bad-factory": (_model(name="x", factory="tests.execution.toy_models:nope"),
                    ["models[2].factory", "nope"]),
    "negative-retries": (_set("retries", -1), ["retries", "-1"]),
    "scale-timeout-zero": (lambda s: s.update(resources={"scale_timeout": 0}),
                           ["resources.scale_timeout", "(got 0)", ">= 1"]),
    "bad-tracking-uri": (_set("mlflow", {"tracking_uri": "./mlruns"}), ["mlflow.tracking_uri", "sqlite"]),
    "bad-precision": (_set("precision", "fp16"), ["precision", "'fp16'", "fp32", "tf32"]),
    "output-unknown-scheme": (_set("output", "ftp://host/sweeps"), ["output", "'ftp://host/sweeps'", "s3://"]),
    "output-uri-without-prefix": (_set("output", "s3://bucket"), ["output", "s3://BUCKET/PREFIX"]),
    "output-uri-default-mlflow": (lambda s: s.update(output="s3://bucket/sweeps", mlflow={}),
                                  ["mlflow.tracking_uri", "object store (s3://)", "mlflow.enabled: false"]),
    "cascade-unknown-member": (_set("attacks.0", {"label": "aa", "cascade": ["pgd", "sqare"]}),
                               ["attacks[0].cascade[1]", "'sqare'", "did you mean 'square'"]),
    "cascade-member-bad-param": (_set("attacks.0", {"label": "aa", "cascade": [{"name": "pgd", "steps": "ten"}]}),
                                 ["attacks[0].cascade[0]", "steps", "'ten'"]),
    "cascade-member-typo": (_set("attacks.0", {"label": "aa", "cascade": [{"name": "pgd", "stpes": 3}]}),
                            ["attacks[0].cascade[0]", "'stpes'", "did you mean 'steps'"]),
    "cascade-member-norm": (_set("attacks.0", {"label": "aa", "norm": "l1", "cascade": ["pgd", "fgsm"]}),
                            ["attacks[0].cascade[1]", "norm"]),
    "cascade-without-label": (_set("attacks.0", {"cascade": ["pgd"]}), ["attacks[0].label", "required"]),
    "cascade-with-a-name": (_set("attacks.0", {"name": "pgd", "label": "x", "cascade": ["pgd"]}),
                            ["attacks[0].name", "no name of its own"]),
    "cascade-empty": (_set("attacks.0", {"label": "aa", "cascade": []}), ["attacks[0].cascade", "non-empty list"]),
    "unknown-key-null": (lambda s: s.update(junk=None), ["junk", "unknown key 'junk'"]),
    "alias-and-key": (lambda s: s.update(resources={"num_gpus": 1, "gpus_per_cell": 1}),
                      ["resources.num_gpus", "(got 1)", "give either num_gpus or gpus_per_cell, not both"]),
    "param-out-of-range": (_set("attacks.0", {"name": "apgd", "rho": 1.5}),
                           ["attacks[0].rho", "expected a number in (0, 1]", "(got 1.5)"]),
    "param-nan": (_set("attacks.0", {"name": "pgd", "step_size": float("nan")}),
                  ["attacks[0].step_size", "finite number > 0"]),
    "param-choice": (_set("attacks.0", {"name": "pgd", "loss": "marjin"}),
                     ["attacks[0].loss", "did you mean 'margin'", "(got 'marjin')"]),
    "params-exclusive": (_set("attacks.0", {"name": "pgd", "step_size": 0.1, "rel_stepsize": 0.1}),
                         ["attacks[0].step_size", "not both"]),
    "adversarials-bad-keep": (_set("adversarials", {"keep": "first"}),
                              ["adversarials.keep", "'first'", "did you mean 'first_n'"]),
    "adversarials-bad-n": (_set("adversarials", {"keep": "first_n", "n": 0}), ["adversarials.n", "(got 0)", ">= 1"]),
    "adversarials-typo": (_set("adversarials", {"kept": "all"}), ["adversarials.kept", "did you mean 'keep'"]),
    "transfer-unknown-model": (_set("transfer", {"sources": ["digits-cnn"], "targets": ["digits-cn"]}),
                               ["transfer.targets[0]", "'digits-cn'", "did you mean 'digits-cnn'"]),
    "transfer-missing-targets": (_set("transfer", {"sources": ["digits-cnn"]}), ["transfer.targets", "required"]),
    "transfer-unknown-attack": (_set("transfer", {"sources": ["digits-cnn"], "targets": ["digits-cnn"],
                                                  "attacks": ["pgd"]}), ["transfer.attacks[0]", "'pgd'"]),
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _invoke(runner: CliRunner, *args: str):
    return runner.invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_naming_key_and_value(case, tmp_path, runner):
    edit, needles = CASES[case]
    spec = base_spec(tmp_path / "out")
    edit(spec)
    path = write_spec(tmp_path / "spec.yaml", spec)
    assert_spec_error(_invoke(runner, "validate", str(path)), needles, tmp_path / "out")


def test_corrupt_checkpoint(tmp_path, runner):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"this is not a checkpoint")
    spec = base_spec(tmp_path / "out")
    spec["models"].append({"name": "mine", "factory": "sweep.models.digits_cnn:build_digits_cnn",
                           "checkpoint": str(bad)})
    result = _invoke(runner, "validate", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert result.exit_code == 2
    assert "models[2].checkpoint" in result.output and "weights.pt" in result.output


def test_output_that_is_a_file(tmp_path, runner):
    target = tmp_path / "results"
    target.write_text("not a folder")
    spec = base_spec(target)
    result = _invoke(runner, "run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert result.exit_code == 2
    assert "output" in result.output and str(target) in result.output and "is a file" in result.output
    assert target.read_text() == "not a folder"


@pytest.mark.parametrize("text", ["name: [unclosed", "- just\n- a list\n"])
def test_not_a_spec(tmp_path, runner, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = _invoke(runner, "validate", str(path))
    assert result.exit_code == 2 and result.output.startswith("error: spec")


def test_missing_spec_file(tmp_path, runner):
    result = _invoke(runner, "run", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "no such file" in result.output


def test_run_with_bad_input_writes_nothing_and_starts_no_ray(tmp_path, runner):
    import ray

    was_up = ray.is_initialized()
    spec = base_spec(tmp_path / "out", mlflow={})  # MLflow on: its store must not appear either
    spec["epsilons"]["linf"][0] = -1
    result = _invoke(runner, "run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert result.exit_code == 2 and "epsilons.linf[0]" in result.output
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
    assert ray.is_initialized() == was_up


def test_valid_spec(tmp_path, runner):
    result = _invoke(runner, "validate", str(write_spec(tmp_path / "spec.yaml", base_spec(tmp_path / "out"))))
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "8 cells" in result.output
    assert not (tmp_path / "out").exists()


def test_aliases_and_shorthands(tmp_path):
    from sweep.spec.config import parse_spec

    spec = base_spec(tmp_path / "out", resources={"num_gpus": 0.25, "num_cpus": 2}, mlflow=False)
    spec["dataset"] = {"name": "digits", "num_samples": 10}
    spec["attacks"][0]["targeted"] = "least-likely"
    parsed = parse_spec(spec)
    assert parsed.resources.gpus_per_cell == 0.25 and parsed.resources.cpus_per_cell == 2.0
    assert parsed.dataset.samples == 10 and parsed.mlflow.enabled is False
    assert parsed.attacks[0].targeted.mode == "least-likely"
    assert parsed.attacks[0].params["draws"] == 2 and parsed.attacks[1].params["distribution"] == "uniform"


def test_relative_paths_are_pinned_to_the_cwd(tmp_path, monkeypatch):
    from sweep.spec.config import parse_spec

    monkeypatch.chdir(tmp_path)
    spec = base_spec(Path("runs/x"), mlflow={"tracking_uri": "sqlite:///runs/m.db"})
    parsed = parse_spec(spec)
    assert parsed.output == tmp_path / "runs" / "x"
    assert parsed.tracking_uri() == f"sqlite:///{tmp_path}/runs/m.db"


def test_attacks_command_lists_every_attack(runner):
    from sweep.attacks import available

    listing = _invoke(runner, "attacks")
    assert listing.exit_code == 0
    for name in available():
        assert name in listing.output
    one = _invoke(runner, "attacks", "pgd")
    assert one.exit_code == 0 and "steps=20" in one.output
    typo = _invoke(runner, "attacks", "pgdd")
    assert typo.exit_code == 2 and "did you mean 'pgd'" in typo.output


def test_the_spec_and_the_constructor_say_the_same(tmp_path):
    """One declaration (the attack's annotated __init__), one formatter: the same words
    for a spec and for Python."""
    from sweep.attacks import create
    from sweep.errors import SpecError
    from sweep.spec.config import parse_spec

    spec = base_spec(tmp_path / "out")
    spec["attacks"][0] = {"name": "pgd", "steps": "ten"}
    with pytest.raises(SpecError) as in_spec:
        parse_spec(spec)
    with pytest.raises(ValueError) as in_python:
        create("pgd", steps="ten")
    assert str(in_spec.value) == "attacks[0].steps: expected an integer >= 1 (got 'ten')"
    assert str(in_python.value) == "pgd: steps: expected an integer >= 1 (got 'ten')"


def test_credentials_in_an_output_uri_are_refused_and_never_echoed(tmp_path, runner):
    spec = base_spec("s3://bucket/sweeps?access_key=AKIAEXAMPLE&secret_key=TOPSECRETVALUE&region=eu-west-1")
    result = _invoke(runner, "validate", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert result.exit_code == 2
    assert "output" in result.output and "credentials" in result.output and "AWS_ACCESS_KEY_ID" in result.output
    assert "access_key=..." in result.output
    assert "TOPSECRETVALUE" not in result.output and "AKIAEXAMPLE" not in result.output


def test_an_object_store_output_parses_without_touching_the_network():
    from sweep.spec.config import parse_spec

    spec = parse_spec(base_spec("s3://bucket/sweeps/one/"))  # mlflow off in the base spec
    assert spec.output == "s3://bucket/sweeps/one" and spec.tracking_uri() is None
    with_server = parse_spec(base_spec("gs://bucket/x", mlflow={"tracking_uri": "http://127.0.0.1:5000"}))
    assert with_server.output == "gs://bucket/x" and with_server.tracking_uri() == "http://127.0.0.1:5000"
