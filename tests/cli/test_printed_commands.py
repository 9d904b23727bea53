"""What ``sweep run`` prints at the end runs as printed, from where the user stands, in a
clean shell: no venv on ``PATH`` (the README's ``.venv/bin/sweep run ...`` without
``source .venv/bin/activate``). A real ``sweep run`` in a subprocess, a real shell."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from sweep.cli import commands
from tests.execution.specs import base_spec, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

VENV_BIN = Path(sys.executable).parent
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"


def clean_env(**extra: str) -> dict[str, str]:
    """A login-like environment without the venv: only PATH, HOME and what the
    worktree needs to import its own code (PYTHONPATH) and keep the model cache."""
    env = {"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    for key in ("PYTHONPATH", "SWEEP_CACHE_DIR", "OMP_NUM_THREADS"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


def printed(text: str, label: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"{label}:")]
    return line.split(":", 1)[1].strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_program_names_resolve_through_path_only_when_path_finds_them(monkeypatch) -> None:
    monkeypatch.setenv("PATH", CLEAN_PATH)
    assert commands.python() != "python" and Path(commands.python()).name.startswith("python")
    assert commands.program("sweep").endswith("/sweep")
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{CLEAN_PATH}")
    assert commands.python() == "python" and commands.program("sweep") == "sweep"


def test_printed_commands_run_as_printed_in_a_clean_shell(tmp_path: Path) -> None:
    spec = base_spec(tmp_path / "runs" / "t", mlflow={})
    spec["output"] = "runs/t"  # relative, as in the demo: relative to where the user stands
    spec["models"] = [{"name": "digits-cnn"}]
    write_spec(tmp_path / "spec.yaml", spec)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rp", dir="/tmp"))  # short: Ray puts sockets there
    env = clean_env(RAY_TMPDIR=str(ray_tmp), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
                    RAY_USAGE_STATS_ENABLED="0")
    try:
        run = subprocess.run(
            [str(VENV_BIN / "sweep"), "run", "spec.yaml", "--no-progress", "--num-cpus", "1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
        )
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run.returncode == 0, run.stdout + run.stderr
    text = run.stdout

    def shell(command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "--noprofile", "--norc", "-c", command], cwd=tmp_path,
                              env=clean_env(), capture_output=True, text=True, timeout=timeout)

    # the bare names fail in this shell: what the issue saw
    assert shell("python -c 'import pandas'").returncode != 0
    assert shell("command -v sweep").returncode != 0

    pandas_cmd = printed(text, "pandas")
    got = shell(pandas_cmd)
    assert got.returncode == 0, (pandas_cmd, got.stderr)
    assert "digits-cnn" in got.stdout and "noise" in got.stdout

    curves_cmd, report_cmd = printed(text, "curves").split("    report: ")
    got = shell(curves_cmd)
    assert got.returncode == 0 and "robust accuracy" in got.stdout, (curves_cmd, got.stderr)
    got = shell(report_cmd.replace(" -o report.html", " -o report.html --no-mlflow"))
    assert got.returncode == 0 and (tmp_path / "report.html").exists(), (report_cmd, got.stderr)

    # the MLflow UI, as printed (plus a free port: 5000 may be taken on a shared machine)
    ui_cmd = printed(text, "mlflow")
    assert f"--backend-store-uri sqlite:///{tmp_path}/runs/t/_mlflow/mlflow.db" in ui_cmd
    port = free_port()
    ui = subprocess.Popen(["bash", "--noprofile", "--norc", "-c", f"exec {ui_cmd} --port {port}"],
                          cwd=tmp_path, env=clean_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        answered = False
        while time.monotonic() < deadline and ui.poll() is None and not answered:
            with contextlib.suppress(OSError), urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                answered = resp.status == 200
            time.sleep(0.5)
        assert answered, (ui_cmd, ui.poll(), ui.stderr.read() if ui.poll() is not None else "")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
    assert shlex.split(ui_cmd)[0] != "mlflow"  # not on this PATH: spelled as a path
