"""What ``sweep submit`` ships and what it refuses, without a cluster.

Bad input exits 2 with one line naming the field, before anything is sent.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from sweep.cli.main import cli
from sweep.cluster import client, jobs, staging
from sweep.errors import SpecError

GOOD = {
    "name": "input-test",
    "dataset": {"name": "digits", "samples": 8},
    "models": [{"name": "digits-cnn"}],
    "attacks": [{"name": "fgsm"}],
    "epsilons": {"linf": [0.1]},
}


def write_spec(folder: Path, **changes) -> Path:
    spec = {**GOOD, "output": str(folder / "out"), **changes}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def invoke(args: list[str], folder: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(folder)
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "missing.yaml", "--address", "http://127.0.0.1:8265"], "spec: no such file"),
        (["submit", "spec.yaml"], "--address: give the Ray dashboard's URL"),
        (["submit", "spec.yaml", "--address", "ray://127.0.0.1:10001"], "expected an http(s):// URL"),
        (["submit", "spec.yaml", "--address", "http://127.0.0.1:8265/api"], "nothing after it"),
        (["submit", "spec.yaml", "--address", "http://127.0.0.1:PORT"], "no Ray job server answers there"),
        (["submit", "spec.yaml", "--env", "PYTHONPATH=/x", "--address", "http://127.0.0.1:1"],
         "PYTHONPATH is set by Ray"),
        (["submit", "spec.yaml", "--include", "nope.pt", "--address", "http://127.0.0.1:1"],
         "--include: no such file or folder"),
        (["status", "--address", "http://127.0.0.1:PORT"], "no Ray job server answers there"),
        (["logs", "some-job", "--address", "http://127.0.0.1:PORT"], "no Ray job server answers there"),
    ],
    ids=["missing-spec", "no-address", "ray-scheme", "path-in-address", "nobody-listens",
         "reserved-env", "missing-include", "status-nobody-listens", "logs-nobody-listens"],
)  # fmt: skip
def test_bad_input_exits_2_with_the_field_named(args, message, tmp_path, monkeypatch) -> None:
    write_spec(tmp_path)
    args = [a.replace("PORT", str(closed_port())) for a in args]
    result = invoke(args, tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.startswith("error: ")


def test_relative_output_is_refused_on_a_cluster(tmp_path, monkeypatch) -> None:
    write_spec(tmp_path, output="runs/here")
    result = invoke(["submit", "spec.yaml", "--dry-run"], tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert "output: is not an absolute path" in result.output and "every node mounts" in result.output


def test_default_output_is_refused_on_a_cluster(tmp_path, monkeypatch) -> None:
    spec = {**GOOD}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = invoke(["submit", "spec.yaml", "--dry-run"], tmp_path, monkeypatch)
    assert result.exit_code == 2 and "output: is required for a cluster run" in result.output


def test_relative_sqlite_tracking_is_refused(tmp_path, monkeypatch) -> None:
    write_spec(tmp_path, mlflow={"tracking_uri": "sqlite:///mlflow.db"})
    result = invoke(["submit", "spec.yaml", "--dry-run"], tmp_path, monkeypatch)
    assert result.exit_code == 2 and "mlflow.tracking_uri" in result.output


def test_a_spec_typo_fails_here_before_anything_is_sent(tmp_path, monkeypatch) -> None:
    write_spec(tmp_path, attacks=[{"name": "fgsn"}])
    # an address nobody answers at: the spec check must fail first
    result = invoke(["submit", "spec.yaml", "--address", f"http://127.0.0.1:{closed_port()}"], tmp_path,
                    monkeypatch)  # fmt: skip
    assert result.exit_code == 2
    assert "attacks[0].name: unknown attack; did you mean 'fgsm'?" in result.output


def test_stage_ships_relative_and_absolute_files_and_local_factories(tmp_path) -> None:
    user, elsewhere = tmp_path / "user", tmp_path / "elsewhere"
    (user / "ckpt").mkdir(parents=True)
    (user / "mypkg").mkdir()
    elsewhere.mkdir()
    (user / "mypkg" / "__init__.py").write_text("")
    (user / "mypkg" / "nets.py").write_text("def build():\n    return None\n")
    (user / "data_mod.py").write_text("def load():\n    return None\n")
    torch.save({"w": torch.zeros(1)}, user / "ckpt" / "a.pt")
    torch.save({"w": torch.ones(1)}, elsewhere / "a.pt")  # same file name, other folder
    (user / "extra.txt").write_text("x")
    spec_path = write_spec(
        user,
        models=[
            {"name": "rel", "factory": "mypkg.nets:build", "checkpoint": "ckpt/a.pt"},
            {"name": "abs", "factory": "mypkg.nets:build", "checkpoint": str(elsewhere / "a.pt")},
            {"name": "cluster-only", "factory": "sweep.models.digits_cnn:build_digits_cnn",
             "checkpoint": "/mnt/shared/ckpt.pt"},
        ],
        dataset={"factory": "data_mod:load", "samples": 8},
    )  # fmt: skip
    dest = tmp_path / "staged"
    staged = staging.stage(spec_path, dest, include=["extra.txt"], cwd=user)

    assert (dest / "ckpt" / "a.pt").exists()  # relative: same relative path
    assert (dest / "mypkg" / "nets.py").exists() and (dest / "data_mod.py").exists()
    assert (dest / "extra.txt").read_text() == "x"
    shipped_spec = yaml.safe_load((dest / "spec.yaml").read_text())
    models = shipped_spec["models"]
    assert models[0]["checkpoint"] == "ckpt/a.pt"
    copied = dest / models[1]["checkpoint"]  # absolute: copied under files/, spec rewritten
    assert models[1]["checkpoint"].startswith("files/")
    assert torch.equal(torch.load(copied, weights_only=True)["w"], torch.ones(1))
    assert models[2]["checkpoint"] == "/mnt/shared/ckpt.pt"  # not here: left for the cluster
    assert any("/mnt/shared/ckpt.pt" in line for line in staged.on_cluster)
    assert any("module 'sweep'" in line for line in staged.on_cluster)  # installed package: not shipped
    assert not (dest / "sweep").exists()
    assert staged.output == str(user / "out")


def test_a_spec_without_local_paths_is_shipped_byte_for_byte(tmp_path) -> None:
    spec_path = write_spec(tmp_path)
    text = spec_path.read_text() + "# a comment the user wants to keep\n"
    spec_path.write_text(text)
    staging.stage(spec_path, tmp_path / "staged", cwd=tmp_path)
    assert (tmp_path / "staged" / "spec.yaml").read_text() == text


def test_stage_refuses_a_package_over_rays_limit(tmp_path, monkeypatch) -> None:
    (tmp_path / "big.pt").write_bytes(b"\0" * 4096)
    spec_path = write_spec(tmp_path, models=[{"name": "m", "factory": "x:y", "checkpoint": "big.pt"}])
    monkeypatch.setattr(staging, "package_limit_bytes", lambda: 1024)
    with pytest.raises(SpecError, match="over Ray's"):
        staging.stage(spec_path, tmp_path / "staged", cwd=tmp_path)


def test_submission_ids_are_readable_and_never_repeat() -> None:
    ids = {jobs.new_submission_id("My Sweep / CIFAR") for _ in range(200)}
    assert len(ids) == 200
    assert all(i.startswith("sweep-my-sweep-cifar-") for i in ids)


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://127.0.0.1:8265", "http://127.0.0.1:8265"),
        ("127.0.0.1:9000/", "http://127.0.0.1:9000"),
        ("https://head.example:443", "https://head.example:443"),
        ("localhost", "http://localhost:8265"),
    ],
)
def test_addresses_are_normalised(given: str, url: str) -> None:
    assert client.normalize_address(given) == url


def test_env_vars_take_values_from_here_or_as_given() -> None:
    got = staging.parse_env_vars(["A=1", "B"], environ={"B": "two"})
    assert got == {"A": "1", "B": "two"}
    with pytest.raises(SpecError, match="not set in this shell"):
        staging.parse_env_vars(["C"], environ={})


def test_the_job_env_never_sets_pythonpath() -> None:
    """Ray refuses to merge a job env and the driver's ray.init env that set the same var."""
    env = staging.runtime_env(staging.Staged(Path("/w"), "s.yaml", "n", "/o"), {"A": "1"})
    assert "PYTHONPATH" not in env["env_vars"] and env["env_vars"]["A"] == "1"


def test_the_token_is_found_where_ray_looks_for_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(key, raising=False)
    assert client.auth_headers() == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home")
    assert client.auth_headers() == {"Authorization": "Bearer from-home"}
    token_file = tmp_path / "tok"
    token_file.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert client.auth_headers() == {"Authorization": "Bearer from-path"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert client.auth_headers() == {"Authorization": "Bearer from-env"}


@pytest.mark.parametrize(
    ("url", "private"),
    [("http://127.0.0.1:8265", True), ("http://localhost:8265", True), ("https://head.example:443", True),
     ("http://10.0.0.5:8265", False), ("http://head.example:8265", False)],
)  # fmt: skip
def test_a_token_in_clear_text_off_this_machine_is_flagged(url: str, private: bool) -> None:
    assert client._private_channel(url) is private


def test_an_object_store_output_is_accepted_for_a_cluster(tmp_path, monkeypatch) -> None:
    # checked here for shape only: the laptop may lack the cluster's credentials
    write_spec(tmp_path, output="s3://team-bucket/sweeps/one",
               mlflow={"tracking_uri": "http://127.0.0.1:5000"})
    result = invoke(["submit", "spec.yaml", "--dry-run"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "s3://team-bucket/sweeps/one" in result.output


def test_an_object_store_output_needs_a_tracking_store(tmp_path, monkeypatch) -> None:
    write_spec(tmp_path, output="s3://team-bucket/sweeps/one")
    result = invoke(["submit", "spec.yaml", "--dry-run"], tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert result.output.startswith("error: mlflow.tracking_uri: is required when output is an object store")


def python_without_attack_sweep(folder: Path) -> Path:
    """An interpreter that cannot import attack-sweep or torch: this Python isolated (-I)
    and without site-packages (-S), as a system Python beside a virtualenv's Ray."""
    import sys

    path = folder / "bare-python"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    path.chmod(0o755)
    return path


def test_stage_ships_the_launcher_and_the_entrypoint_runs_it(tmp_path) -> None:
    spec_path = write_spec(tmp_path)
    staged = staging.stage(spec_path, tmp_path / "staged", cwd=tmp_path)
    assert (staged.working_dir / "sweep-job.sh").exists()
    assert jobs.entrypoint("spec.yaml", fresh=True) == "sh sweep-job.sh spec.yaml --fresh"


def test_the_launcher_names_a_python_without_attack_sweep_and_the_fix(tmp_path) -> None:
    import os
    import subprocess

    staged = staging.stage(write_spec(tmp_path), tmp_path / "staged", cwd=tmp_path)
    bare = python_without_attack_sweep(tmp_path)
    result = subprocess.run(["sh", "sweep-job.sh", "spec.yaml"], cwd=staged.working_dir,
                            env={**os.environ, "SWEEP_PYTHON": str(bare)},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2, result
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: the cluster's Python ({bare}) cannot run the sweep: "
                           "ModuleNotFoundError: No module named 'sweep'"), line
    assert "install attack-sweep and torch on every node" in line and "SWEEP_PYTHON" in line
    assert result.stdout == "" and not (tmp_path / "out").exists()
class _AgentlessHead:
    """An HTTP server on 127.0.0.1 that answers Ray's Job API as a head whose job
    agent is not up yet: version and package upload succeed, the submission gets
    HTTP 500 "No available agent to submit job" (issue 15, case 13)."""

    BODY = "No available agent to submit job, please try again later."

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        from ray import __version__ as ray_version

        body = self.BODY
        self.posts: list[str] = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def _send(self, code: int, text: str, kind: str = "application/json") -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/api/version":
                    self._send(200, json.dumps({"version": "4", "ray_version": ray_version,
                                                "ray_commit": "x"}))
                else:  # the package is not there yet: the client uploads it
                    self._send(404, "not found", "text/plain")

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._send(200, "{}")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts.append(self.path)
                self._send(500, body, "text/plain")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_job_server_answering_500_is_one_line_and_exit_1(tmp_path, monkeypatch) -> None:
    write_spec(tmp_path)
    head = _AgentlessHead()
    try:
        result = invoke(["submit", "spec.yaml", "--no-check", "--address", head.url], tmp_path,
                        monkeypatch)
    finally:
        head.close()
    assert head.posts == ["/api/jobs/"]  # it did reach the submission
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("shipping")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "No available agent" in lines[0] and head.url in lines[0] and "500" in lines[0]
    assert "Traceback" not in result.output
