"""``sweep submit / status`` against a real head with token authentication OFF,
started by the virtualenv's ``ray start`` without the virtualenv activated.

Our client sends a token whenever it finds one (Ray's own client does so only in
token mode); a cluster without authentication must not mind. The job's shell then
finds another ``python`` first on the head's ``PATH`` (one without Ray or
attack-sweep): the job's launcher (sweep/cluster/launcher.py) must run the sweep with the
interpreter Ray runs on, and name the fix when told to use one that lacks it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cluster.head import VENV_BIN, RayHead
from tests.cluster.test_submit import run_in_process, sweep_cli
from tests.cluster.test_submit_input import python_without_attack_sweep, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_the_head_answers_without_a_token(ray_head_no_auth: RayHead) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{ray_head_no_auth.dashboard_url}/api/jobs/", timeout=10) as r:
        assert r.status == 200


@pytest.mark.parametrize("token", [None, "f" * 64], ids=["no-token", "stray-token"])
def test_status_works_with_or_without_a_token_here(
    ray_head_no_auth: RayHead, token: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    env = ray_head_no_auth.client_env(**({"RAY_AUTH_TOKEN": token} if token else {}))
    result = run_in_process(["status", "--address", ray_head_no_auth.dashboard_url], env, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "no sweep jobs on this cluster" in result.output


def test_the_job_runs_on_the_interpreter_ray_runs_on_not_the_first_python_on_path(
    ray_head_no_auth: RayHead, tmp_path: Path
) -> None:
    assert str(VENV_BIN) not in ray_head_no_auth.env["PATH"].split(":")  # the venv is not activated
    spec = write_spec(tmp_path, dataset={"name": "digits", "samples": 4}, mlflow={"enabled": False},
                      resources={"max_workers": 1})
    result = sweep_cli(["submit", spec.name, "--wait", "--address", ray_head_no_auth.dashboard_url],
                       cwd=tmp_path, env=ray_head_no_auth.client_env(), timeout=300)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    # the job's banner names its interpreter: the venv's, which Ray runs on, not PATH's python3
    match = re.search(r"^attack-sweep \S+ \(ray \S+, python \S+ at (\S+)\)", result.stdout, re.M)
    assert match, result.stdout
    assert Path(match.group(1)).parent.resolve() == VENV_BIN.resolve(), match.group(1)
    assert "computed 1 cell(s)" in result.stdout


def test_a_python_without_attack_sweep_is_one_line_with_the_fix(ray_head_no_auth: RayHead, tmp_path: Path) -> None:
    bare = python_without_attack_sweep(tmp_path)
    spec = write_spec(tmp_path)
    result = sweep_cli(["submit", spec.name, "--wait", "--env", f"SWEEP_PYTHON={bare}",
                        "--address", ray_head_no_auth.dashboard_url],
                       cwd=tmp_path, env=ray_head_no_auth.client_env(), timeout=240)  # fmt: skip
    assert result.returncode == 2, f"{result.stdout}\n{result.stderr}"
    assert (f"error: the cluster's Python ({bare}) cannot run the sweep: ModuleNotFoundError: "
            "No module named 'sweep'; install attack-sweep and torch on every node") in result.stdout
    assert not (tmp_path / "out").exists()
