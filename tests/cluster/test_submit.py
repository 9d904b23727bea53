"""``sweep submit / status / logs`` against a real Ray head with token authentication ON.

The head runs on this machine (``ray start --head`` on 127.0.0.1, see head.py), so
the sweep's absolute output folder is "shared storage" for it. The client runs as
a user would run it: a ``sweep`` subprocess in a folder holding the spec, a factory
module and a checkpoint (both named by relative path, so the job, which runs in
its own working folder on the head, finds them only if they were shipped), with
the token in a file named by ``RAY_AUTH_TOKEN_PATH`` and *no* ``RAY_AUTH_MODE``
(Ray's own client would then send no token and get 401).
"""

from __future__ import annotations

import re
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from sweep.cli.main import cli
from tests.cluster.head import VENV_BIN, RayHead

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SAMPLES = 16
EPSILONS = [0.05, 0.1]
JOB_TIMEOUT_S = 300


@dataclass
class Submitted:
    folder: Path
    job_id: str
    output: Path
    spec: dict
    result: subprocess.CompletedProcess[str]


def sweep_cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = JOB_TIMEOUT_S + 60):
    """Run the ``sweep`` console script as a user would; returns the completed process."""
    return subprocess.run(
        [str(VENV_BIN / "sweep"), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def write_user_folder(folder: Path, output: Path, digits_model: torch.nn.Module) -> dict:
    """A user's folder: spec.yaml, a factory module and a checkpoint, all by relative path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_nets.py").write_text(
        textwrap.dedent(
            '''
            """A user's model module: the digits CNN architecture, weights from the checkpoint."""
            from sweep.models.digits_cnn import build_digits_cnn


            def digits_cnn(num_classes=10):
                return build_digits_cnn(num_classes)
            '''
        )
    )
    (folder / "weights").mkdir()
    torch.save(digits_model.net.state_dict(), folder / "weights" / "digits-cnn.pt")
    spec = {
        "name": "cluster-e2e",
        "seed": 0,
        "output": str(output),
        "dataset": {"name": "digits", "samples": SAMPLES, "shard_size": 8},
        "models": [
            {"name": "shipped-cnn", "factory": "tiny_nets:digits_cnn", "checkpoint": "weights/digits-cnn.pt"}
        ],
        "attacks": [{"name": "fgsm"}],
        "epsilons": {"linf": EPSILONS},
        "resources": {"max_workers": 1},  # one worker process importing torch: 2 cores here
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec


@pytest.fixture(scope="module")
def submitted(ray_head: RayHead, tmp_path_factory, digits_model) -> Submitted:
    """One real sweep, submitted with ``--wait`` through the authenticated job API."""
    root = tmp_path_factory.mktemp("e2e")
    output = root / "results"
    spec = write_user_folder(root / "user", output, digits_model)
    result = sweep_cli(
        ["submit", "spec.yaml", "--address", ray_head.dashboard_url, "--wait",
         "--timeout", str(JOB_TIMEOUT_S)],
        cwd=root / "user", env=ray_head.client_env(),
    )  # fmt: skip
    match = re.search(r"submitted (sweep-cluster-e2e-\S+)", result.stdout)
    assert match, f"no job id in the output:\n{result.stdout}\n{result.stderr}"
    return Submitted(folder=root / "user", job_id=match.group(1), output=output, spec=spec, result=result)


def test_the_head_really_requires_a_token(ray_head: RayHead) -> None:
    """Without this, the submit test below would prove nothing about authentication."""
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{ray_head.dashboard_url}/api/jobs/", timeout=10)
    assert err.value.code == 401


def test_submit_wait_runs_the_sweep_and_succeeds(submitted: Submitted) -> None:
    r = submitted.result
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    out = r.stdout
    assert "shipping models[0].checkpoint: weights/digits-cnn.pt" in out
    assert "shipping models[0].factory: tiny_nets.py" in out
    # the job's own log, streamed back: the driver banner and `sweep run`'s summary
    assert "attack-sweep" in out and "computed 2 cell(s)" in out
    assert f"results: {submitted.output}" in out


def test_parquet_rows_are_all_there_and_come_from_the_shipped_weights(
    submitted: Submitted, digits_model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = pd.read_parquet(submitted.output)
    assert len(rows) == SAMPLES * len(EPSILONS)
    assert set(rows["model"].astype(str)) == {"shipped-cnn"}
    assert set(rows["attack"].astype(str)) == {"fgsm"}
    assert sorted(rows["epsilon"].unique()) == EPSILONS
    assert not rows.duplicated(["cell_id", "sample_id", "epsilon"]).any()
    assert (rows["robust"] == (rows["clean_correct"] & ~rows["success"])).all()

    # clean predictions equal those of the checkpoint's weights here: the job loaded
    # the shipped checkpoint into the shipped factory's network (random weights or a
    # wrong file would disagree on 16 digits)
    from sweep.spec.config import parse_spec
    from sweep.spec.inputs import load_data

    monkeypatch.chdir(submitted.folder)  # the spec's relative checkpoint path
    data = load_data(parse_spec({**submitted.spec, "output": str(submitted.output)}).dataset)
    with torch.no_grad():
        expected = dict(zip(data.sample_ids.tolist(), digits_model(data.images).argmax(1).tolist(), strict=True))
    got = rows.drop_duplicates("sample_id").set_index("sample_id")["clean_pred"].to_dict()
    assert got == expected


def test_mlflow_holds_the_sweep_and_matches_parquet(submitted: Submitted) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{submitted.output / '_mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cluster-e2e")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    rows = pd.read_parquet(submitted.output)
    sweep_ids = set(rows["sweep_id"])
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep.role") == "child"]
    assert len(parents) == 1 and {parents[0].data.tags["sweep.sweep_id"]} == sweep_ids
    assert len(children) == 1
    child = children[0]
    assert child.data.tags["sweep.model"] == "shipped-cnn"
    assert child.data.tags["sweep.complete"] == "true"
    history = sorted(client.get_metric_history(child.info.run_id, "robust_accuracy"), key=lambda m: m.step)
    expected = rows.groupby("epsilon")["robust"].mean().sort_index().tolist()
    assert [m.value for m in history] == pytest.approx(expected)


def run_in_process(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """``sweep ...`` in this process (cheaper than a subprocess) with exactly ``env``'s Ray vars."""
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        if key in env:
            monkeypatch.setenv(key, env[key])
        else:
            monkeypatch.delenv(key, raising=False)
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_status_lists_the_job_and_shows_it(ray_head: RayHead, submitted: Submitted, monkeypatch) -> None:
    env = ray_head.client_env()
    listing = run_in_process(["status", "--address", ray_head.dashboard_url], env, monkeypatch)
    assert listing.exit_code == 0, listing.output
    line = next(ln for ln in listing.output.splitlines() if submitted.job_id in ln)
    assert "SUCCEEDED" in line and "cluster-e2e" in line

    one = run_in_process(["status", submitted.job_id, "--address", ray_head.dashboard_url], env, monkeypatch)
    assert one.exit_code == 0, one.output
    assert re.search(r"^status:\s+SUCCEEDED$", one.output, re.M)
    assert re.search(rf"^output:\s+{re.escape(str(submitted.output))}$", one.output, re.M)
    assert "sh sweep-job.sh spec.yaml" in one.output  # the launcher (sweep/cluster/launcher.py)
    # the cluster's nodes, and this job's workers: none left once it ended
    assert re.search(r"^nodes:\s+1 alive \(0 with GPUs, 0 GPUs\)$", one.output, re.M), one.output
    assert re.search(r"^workers:\s+none$", one.output, re.M), one.output


def test_status_and_logs_find_the_head_in_ray_address(ray_head: RayHead, submitted: Submitted,
                                                     monkeypatch) -> None:
    """No --address: RAY_ADDRESS names the dashboard, as for Ray's own `ray job` commands."""
    env = ray_head.client_env(RAY_ADDRESS=ray_head.dashboard_url)
    listing = run_in_process(["status"], env, monkeypatch)
    assert listing.exit_code == 0, listing.output
    assert submitted.job_id in listing.output
    log = run_in_process(["logs", submitted.job_id], env, monkeypatch)
    assert log.exit_code == 0 and "computed 2 cell(s)" in log.output


def test_logs_print_the_drivers_output(ray_head: RayHead, submitted: Submitted, monkeypatch) -> None:
    env = ray_head.client_env()
    result = run_in_process(["logs", submitted.job_id, "--address", ray_head.dashboard_url], env, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "computed 2 cell(s)" in result.output and "linf: robust accuracy" in result.output
    # the run's progress line, with the worker pool, reaches the job's log
    assert "cells 2/2, " in result.output and "; workers 1 of 1 placed on 1 node(s)" in result.output
    followed = run_in_process(
        ["logs", submitted.job_id, "--follow", "--address", ray_head.dashboard_url], env, monkeypatch
    )  # a finished job: prints the log and exits with the job's result
    assert followed.exit_code == 0 and "computed 2 cell(s)" in followed.output


def test_unknown_job_is_bad_input(ray_head: RayHead, monkeypatch) -> None:
    env = ray_head.client_env()
    for args in (["status", "sweep-nope"], ["logs", "sweep-nope"]):
        result = run_in_process([*args, "--address", ray_head.dashboard_url], env, monkeypatch)
        assert result.exit_code == 2
        assert "no such job" in result.output


def test_missing_or_wrong_token_is_bad_input_with_a_hint(ray_head: RayHead, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token to fall back on
    env = {k: v for k, v in ray_head.client_env().items() if k != "RAY_AUTH_TOKEN_PATH"}
    missing = run_in_process(["status", "--address", ray_head.dashboard_url], env, monkeypatch)
    assert missing.exit_code == 2
    assert "requires a token and none was found" in missing.output

    wrong = run_in_process(
        ["status", "--address", ray_head.dashboard_url], {**env, "RAY_AUTH_TOKEN": "0" * 64}, monkeypatch
    )
    assert wrong.exit_code == 2
    assert "rejected this machine's token" in wrong.output


def test_a_spec_error_on_the_cluster_comes_back_as_exit_2(
    ray_head: RayHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cheapest real sweep job: a spec the job itself rejects (the local check
    skipped with --no-check). `sweep submit --wait` exits with the driver's code (2),
    as `sweep run` would, and the job's error is streamed back."""
    spec = {
        "name": "rejected-on-cluster",
        "output": str(tmp_path / "out"),
        "dataset": {"name": "digits", "samples": 8},
        "models": [{"name": "digits-cnn"}],
        "attacks": [{"name": "fgsm", "stepz": 3}],
        "epsilons": {"linf": [0.1]},
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec))
    result = sweep_cli(
        ["submit", "bad.yaml", "--no-check", "--wait", "--address", ray_head.dashboard_url],
        cwd=tmp_path, env=ray_head.client_env(), timeout=240,
    )  # fmt: skip
    assert result.returncode == 2, f"{result.stdout}\n{result.stderr}"
    assert "attacks[0].stepz: unknown key" in result.stdout  # the job's own error, streamed back
    assert "FAILED" in result.stderr
    assert not (tmp_path / "out").exists()  # the job wrote nothing before checking the spec

    listing = run_in_process(
        ["status", "--address", ray_head.dashboard_url], ray_head.client_env(), monkeypatch
    )
    line = next(ln for ln in listing.output.splitlines() if "rejected-on-cluster" in ln)
    assert "FAILED" in line


def test_follow_gives_up_at_the_timeout_and_the_job_keeps_running(ray_head: RayHead, monkeypatch) -> None:
    from sweep.cluster import jobs
    from sweep.cluster.client import connect

    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(ray_head.token_path))
    client = connect(ray_head.dashboard_url)
    job_id = client.submit_job(entrypoint="sleep 60", submission_id=jobs.new_submission_id("sleeper"))
    try:
        lines: list[str] = []
        started = time.monotonic()
        assert jobs.follow(client, job_id, lines.append, timeout=1.0, poll=0.2) is None
        assert time.monotonic() - started < 30
        assert not client.get_job_status(job_id).is_terminal()
    finally:
        client.stop_job(job_id)


def test_a_sweep_submitted_with_an_object_store_output(ray_head: RayHead, s3_server, tmp_path, digits_model):
    """No shared filesystem: the job's driver and workers on the head write to S3 (moto on
    127.0.0.1) with credentials passed as ``--env KEY`` (on a real cluster: an instance
    profile). The head was started without them, so they can only come from the job."""
    import pyarrow.fs as pafs

    s3_server.create_bucket("cluster-results")
    uri = s3_server.uri("cluster-results", "e2e")
    db = tmp_path / "mlflow" / "mlflow.db"
    spec = write_user_folder(tmp_path / "user", uri, digits_model)  # type: ignore[arg-type]
    spec["mlflow"] = {"tracking_uri": f"sqlite:///{db}"}  # absolute: sqlite:////...
    (tmp_path / "user" / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    credentials = ["--env", "AWS_ACCESS_KEY_ID", "--env", "AWS_SECRET_ACCESS_KEY",
                   "--env", "AWS_EC2_METADATA_DISABLED"]
    result = sweep_cli(
        ["submit", "spec.yaml", "--address", ray_head.dashboard_url, "--wait",
         "--timeout", str(JOB_TIMEOUT_S), *credentials],
        cwd=tmp_path / "user", env=ray_head.client_env(),
    )  # fmt: skip
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert f"results: {uri}" in result.stdout and "computed 2 cell(s)" in result.stdout

    fs, base = pafs.FileSystem.from_uri(uri)
    rows = pd.read_parquet(base, filesystem=fs)
    assert len(rows) == SAMPLES * len(EPSILONS)
    assert not rows.duplicated(["cell_id", "sample_id", "epsilon"]).any()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("cluster-e2e")
    assert experiment is not None and len(client.search_runs([experiment.experiment_id])) >= 2
