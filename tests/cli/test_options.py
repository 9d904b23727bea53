"""The options several commands share (sweep/cli/options.py): one definition each, and
the environment variables Ray's and MLflow's own CLIs read (RAY_API_SERVER_ADDRESS,
RAY_ADDRESS, MLFLOW_TRACKING_URI), through the real click entry point. No cluster:
an address nobody listens on gets an error that names where it came from."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sweep.cli.main import cli

ADDRESS_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


def command(name: str) -> click.Command:
    found = cli.get_command(click.Context(cli), name)
    assert found is not None, name
    return found


@pytest.fixture()
def no_client_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in (*ADDRESS_VARS, "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    ("name", "option", "variables"),
    [
        ("submit", "--address", ["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"]),
        ("status", "--address", ["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"]),
        ("logs", "--address", ["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"]),
        ("run", "--address", ["RAY_ADDRESS"]),
        ("sync", "--tracking-uri", ["MLFLOW_TRACKING_URI"]),
        ("report", "--tracking-uri", ["MLFLOW_TRACKING_URI"]),
    ],
)
def test_help_names_the_environment_variable(name: str, option: str, variables: list[str]) -> None:
    result = invoke([name, "--help"], {})
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # click wraps the help
    assert option in text
    assert f"[env var: {', '.join(variables)}]" in text


@pytest.mark.parametrize(
    ("name", "option"),
    [("curves", "--sweep-id"), ("report", "--sweep-id"), ("sync", "--tracking-uri"),
     ("report", "--tracking-uri"), ("submit", "--address"), ("status", "--address"),
     ("logs", "--address")],
)  # fmt: skip
def test_each_shared_option_has_one_definition(name: str, option: str) -> None:
    """Same help and same variables wherever a shared option appears."""
    from sweep.cli import options

    shared = {"--sweep-id": options.sweep_id_option, "--tracking-uri": options.tracking_uri_option,
              "--address": options.address_option}[option]  # fmt: skip
    reference = shared(click.Command("x")).params[0]  # type: ignore[arg-type]
    param = next(p for p in command(name).params if option in p.opts)
    assert (param.help, param.envvar) == (reference.help, reference.envvar)  # type: ignore[attr-defined]


@pytest.mark.parametrize("args", [["status"], ["logs", "some-job"], ["submit", "spec.yaml", "--no-check"]])
def test_ray_address_is_used_when_address_is_absent(args, tmp_path, no_client_env) -> None:
    (tmp_path / "spec.yaml").write_text(json.dumps({
        "name": "env", "output": str(tmp_path / "out"), "dataset": {"name": "digits", "samples": 8},
        "models": [{"name": "digits-cnn"}], "attacks": [{"name": "fgsm"}], "epsilons": {"linf": [0.1]},
    }))  # fmt: skip
    no_client_env.chdir(tmp_path)
    port = closed_port()
    result = invoke(args, {"RAY_ADDRESS": f"http://127.0.0.1:{port}"})
    assert result.exit_code == 2, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("error:"))
    assert error.startswith("error: $RAY_ADDRESS: no Ray job server answers there")
    assert f"http://127.0.0.1:{port}" in error
    assert "RAY_API_SERVER_ADDRESS" in error  # the hint: RAY_ADDRESS is often a GCS address


def test_ray_api_server_address_wins_over_ray_address_and_the_option_over_both(no_client_env) -> None:
    api, gcs, given = closed_port(), closed_port(), closed_port()
    env = {"RAY_API_SERVER_ADDRESS": f"127.0.0.1:{api}", "RAY_ADDRESS": f"127.0.0.1:{gcs}"}
    result = invoke(["status"], env)
    assert result.exit_code == 2
    assert result.output.startswith("error: $RAY_API_SERVER_ADDRESS: no Ray job server answers")
    assert f"http://127.0.0.1:{api}" in result.output and str(gcs) not in result.output
    result = invoke(["status", "--address", f"127.0.0.1:{given}"], env)
    assert result.exit_code == 2
    assert result.output.startswith("error: --address: no Ray job server answers")
    assert f"http://127.0.0.1:{given}" in result.output and str(api) not in result.output


def test_a_ray_address_of_auto_is_refused_for_the_job_api(no_client_env) -> None:
    result = invoke(["status"], {"RAY_ADDRESS": "auto"})
    assert result.exit_code == 2
    assert result.output.startswith("error: $RAY_ADDRESS: is an address for joining a cluster")
    assert "http://127.0.0.1:8265" in result.output


def test_without_any_address_the_error_names_the_variables(no_client_env) -> None:
    result = invoke(["status"], {})
    assert result.exit_code == 2
    assert "--address: give the Ray dashboard's URL" in result.output
    assert "RAY_API_SERVER_ADDRESS (or RAY_ADDRESS)" in result.output


def test_sweep_run_joins_the_cluster_in_ray_address(no_client_env) -> None:
    """Parsed only: joining needs a cluster. The option wins over the variable."""
    run = command("run")
    no_client_env.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    assert run.make_context("run", ["spec.yaml"]).params["address"] == "10.0.0.7:6379"
    assert run.make_context("run", ["spec.yaml", "--address", "auto"]).params["address"] == "auto"
    no_client_env.delenv("RAY_ADDRESS")
    assert run.make_context("run", ["spec.yaml"]).params["address"] is None  # embedded Ray


@pytest.mark.parametrize("name", ["sync", "report"])
def test_mlflow_tracking_uri_is_the_default_tracking_uri(name: str, tmp_path, no_client_env) -> None:
    cmd = command(name)
    no_client_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert cmd.make_context(name, [str(tmp_path)]).params["tracking_uri"] == "http://127.0.0.1:5999"
    given = ["--tracking-uri", "sqlite:////tmp/x.db"]
    assert cmd.make_context(name, [str(tmp_path), *given]).params["tracking_uri"] == "sqlite:////tmp/x.db"
    no_client_env.delenv("MLFLOW_TRACKING_URI")
    assert cmd.make_context(name, [str(tmp_path)]).params["tracking_uri"] is None


def test_sync_goes_to_the_store_in_mlflow_tracking_uri(tmp_path: Path, no_client_env) -> None:
    """The plan names a SQLite store; MLFLOW_TRACKING_URI (nobody listening) is the one tried."""
    manifest = tmp_path / "_manifest"
    manifest.mkdir()
    plan = {"experiment": "e", "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "pairs": []}
    (manifest / "plan.json").write_text(json.dumps(plan))
    uri = f"http://127.0.0.1:{closed_port()}"
    result = invoke(["sync", str(tmp_path)], {"MLFLOW_TRACKING_URI": uri})
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: MLflow unreachable")
    assert uri in result.output
    assert not (tmp_path / "mlflow.db").exists()
