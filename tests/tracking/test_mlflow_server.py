"""MLflow against a real ``mlflow server`` on 127.0.0.1: runs logged once, a server that
goes away mid-sweep, and ``sweep sync`` backfilling when it is back."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.execution.running import sweep
from tests.execution.specs import base_spec, write_spec

pytestmark = [
    pytest.mark.usefixtures("ray_session"), pytest.mark.ray, pytest.mark.mlflow_server, pytest.mark.slow,
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` in its own session (process group), stopped by signalling the group."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.uri = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
             "--artifacts-destination", str(self.root / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not answer /health")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[MlflowServer]:
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow"), _free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _runs(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id]))


def _roles(runs: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        role = r.data.tags.get("sweep.role", "?")
        out[role] = out.get(role, 0) + 1
    return out


def _run(*args: str):
    return sweep(*args)  # on the package's kept worker pool


def test_runs_logged_once_against_a_live_server(server, tmp_path):
    spec = base_spec(tmp_path / "out", name="live", mlflow={"tracking_uri": server.uri})
    path = write_spec(tmp_path / "spec.yaml", spec)
    first = _run("run", str(path), "--no-progress")
    assert first.exit_code == 0, first.output
    assert f"mlflow:  open {server.uri}" in first.output
    runs = _runs(server.uri, "live")
    # a child per model x attack; no worst-case run (sweep.tracking.curves): each norm has
    # one attack here, whose child run already is its worst case
    assert _roles(runs) == {"parent": 1, "child": 4}
    parent = next(r for r in runs if r.data.tags["sweep.role"] == "parent")
    from mlflow.tracking import MlflowClient

    artifacts = {a.path for a in MlflowClient(server.uri).list_artifacts(parent.info.run_id)}
    assert {"spec.yaml", "spec.resolved.json"} <= artifacts

    again = _run("run", str(path), "--no-progress")  # resume: nothing to compute, nothing to log
    assert again.exit_code == 0 and "computing 0" in again.output
    fresh = _run("run", str(path), "--no-progress", "--fresh")  # recompute: runs replaced, not added
    assert fresh.exit_code == 0, fresh.output
    assert _roles(_runs(server.uri, "live")) == {"parent": 1, "child": 4}


def test_server_down_mid_sweep_then_sync(server, tmp_path, monkeypatch):
    import sweep.execution.pipeline

    spec = base_spec(tmp_path / "out", name="outage", mlflow={"tracking_uri": server.uri})
    path = write_spec(tmp_path / "spec.yaml", spec)
    real_run_cells = sweep.execution.pipeline.run_cells

    def server_dies_then_run(*args, **kwargs):  # the parent run exists; then the server goes
        # the parent is made in a thread while the cells start (pipeline._run_held): wait for it
        deadline = time.monotonic() + 60
        while _roles(_runs(server.uri, "outage")).get("parent") != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        server.stop()
        return real_run_cells(*args, **kwargs)

    monkeypatch.setattr(sweep.execution.pipeline, "run_cells", server_dies_then_run)
    result = _run("run", str(path), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "MLflow unreachable" in result.output and f"sweep sync {tmp_path / 'out'}" in result.output
    assert len(pd.read_parquet(tmp_path / "out")) == 2 * (3 + 2) * 16  # every row is there

    monkeypatch.undo()
    server.start()
    assert _roles(_runs(server.uri, "outage")) == {"parent": 1}
    synced = _run("sync", str(tmp_path / "out"))
    assert synced.exit_code == 0, synced.output
    assert "4 run(s) logged, 0 already there" in synced.output
    runs = _runs(server.uri, "outage")
    assert _roles(runs) == {"parent": 1, "child": 4}
    parent = next(r for r in runs if r.data.tags["sweep.role"] == "parent")
    assert parent.info.status == "FINISHED"
    again = _run("sync", str(tmp_path / "out"))
    assert "0 run(s) logged, 4 already there" in again.output
    assert _roles(_runs(server.uri, "outage")) == {"parent": 1, "child": 4}
