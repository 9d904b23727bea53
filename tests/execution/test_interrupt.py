"""Ctrl-C on a real ``sweep run``: exit code 130 (not 1, "a cell failed"), the MLflow
parent run marked KILLED (not left RUNNING), finished cells kept for the resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sweep.results.manifest import Manifest
from tests.cluster.processes import kill_pids, leftovers, wait_gone
from tests.cluster.sweeps import driver_env, slow_spec
from tests.execution.specs import write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_sigint_marks_the_parent_run_killed_and_exits_130(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    spec = slow_spec(out, samples=32, shard_size=2, delay_s=0.05, name="interrupted")
    spec["mlflow"] = {}  # the default SQLite store under out/_mlflow
    spec_path = write_spec(tmp_path / "spec.yaml", spec)
    ray_tmp = Path(tempfile.mkdtemp(prefix="ri", dir="/tmp"))  # short: Ray puts sockets there
    env = driver_env(ray_tmp)
    command = [str(Path(env["PATH"].split(os.pathsep)[0]) / "sweep"), "run", str(spec_path),
               "--no-progress", "--num-cpus", "1"]
    manifest = Manifest(out)
    log = tmp_path / "run.log"
    try:
        with log.open("wb") as sink:
            driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while driver.poll() is None and time.monotonic() < deadline:
            if manifest.records():
                break
            time.sleep(0.2)
        assert driver.poll() is None, f"the sweep ended before the interrupt:\n{log.read_text()}"
        # Ctrl-C in a terminal: SIGINT to the foreground process group
        os.killpg(driver.pid, signal.SIGINT)
        driver.wait(timeout=120)
        text = log.read_text()
        assert driver.returncode == 130, text
        assert "interrupted: finished cells are kept" in text

        client = MlflowClient(tracking_uri=f"sqlite:///{out}/_mlflow/mlflow.db")
        exp = client.get_experiment_by_name("interrupted")
        (parent,) = client.search_runs([exp.experiment_id], "tags.`sweep.role` = 'parent'")
        assert parent.info.status == "KILLED"
        assert 0 < len(Manifest(out).verified()) < 16  # kept, and not all done
    finally:
        _, left = wait_gone(driver.pid, str(ray_tmp), 30)
        kill_pids(left + leftovers(driver.pid, str(ray_tmp)))
        shutil.rmtree(ray_tmp, ignore_errors=True)
