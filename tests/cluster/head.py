"""A real Ray head on 127.0.0.1 for the cluster tests, started the way users start one.

``ray start --head --block`` runs in the background in its own session (process
group). SIGTERM to it stops the head it started, then SIGKILL to the group
removes anything left (job drivers), all without ``ray stop``, which would stop
*every* Ray instance on the machine, including other test runs'.

Isolation from anything else on this machine:
- every port Ray would otherwise take a fixed default for (GCS 6379, dashboard
  8265, Ray Client 10001, dashboard agent 52365, ...) is a free port picked here;
- ``--temp-dir`` is a fresh short folder, so the ``ray_current_cluster`` file the
  head leaves behind (NOTES.md) never points a later plain ``ray.init()`` at a dead
  cluster; it is short because Ray puts unix sockets there (108-byte path limit).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
RAY = VENV_BIN / "ray"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


@dataclass
class RayHead:
    """A running head: where its job API answers and how a client authenticates."""

    dashboard_url: str
    gcs_address: str
    temp_dir: Path
    log_path: Path
    token: str | None  # None: token authentication disabled on this head
    token_path: Path | None
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def client_env(self, **extra: str) -> dict[str, str]:
        """Environment for a ``sweep`` subprocess talking to this head."""
        env = {k: v for k, v in os.environ.items() if k not in _RAY_CLIENT_VARS}
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        if self.token_path is not None:
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        env.update(extra)
        return env


# Variables that would silently redirect or re-authenticate a client in a test.
_RAY_CLIENT_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together while picking)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _started(log_path: Path) -> bool:
    return "Ray runtime started" in log_path.read_text(errors="replace")


def _job_api_ready(url: str, token: str | None) -> bool:
    request = urllib.request.Request(f"{url}/api/jobs/")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_head(
    *, auth: bool, num_cpus: int = 2, autoscaling: Callable[[str], dict[str, Any]] | None = None,
    venv_on_path: bool = True,
) -> Iterator[RayHead]:
    """Start a head (token authentication on or off), wait for its job API, stop it after.

    ``autoscaling``: a function of the head's GCS address returning an autoscaler
    config; the head then runs Ray's autoscaler with it (``--autoscaling-config``,
    the ``fake_multinode`` provider of :mod:`tests.cluster.autoscaling`).
    ``venv_on_path=False``: the venv's ``ray start`` run by its path, the venv not
    activated (job entrypoints then find another ``python``, or none, on ``PATH``).
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    log_path = temp_dir / "ray-start.log"
    gcs, dashboard, client, agent_http, agent_grpc, runtime_env, metrics = free_ports(7)
    env = {k: v for k, v in os.environ.items() if k not in _RAY_CLIENT_VARS}
    if venv_on_path:  # as after `source .venv/bin/activate`
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    else:
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # On Linux Ray replaces --node-ip-address 127.0.0.1 by the machine's routable
    # address and binds GCS and raylet to all interfaces; in its single-machine mode
    # (the macOS/Windows default) every server listens on 127.0.0.1 only.
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    token = token_path = None
    if auth:
        # The token lives in the test's temp folder, never in the user's ~/.ray.
        token = secrets.token_hex(32)
        token_path = temp_dir / "auth_token"
        token_path.write_text(token)
        token_path.chmod(0o600)
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    else:
        env["RAY_AUTH_MODE"] = "disabled"
    command = [
        str(RAY), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1",
        "--port", str(gcs),
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard),
        "--include-dashboard", "true",
        "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent_http),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(runtime_env),
        "--metrics-export-port", str(metrics),
        "--num-cpus", str(num_cpus),
        "--num-gpus", "0",
        "--temp-dir", str(temp_dir),
        "--disable-usage-stats",
    ]  # fmt: skip
    if autoscaling is not None:
        config_path = temp_dir / "autoscaling.yaml"
        config_path.write_text(json.dumps(autoscaling(f"127.0.0.1:{gcs}")))
        command.append(f"--autoscaling-config={config_path}")
        # the fake_multinode provider refuses to run without it; one autoscaler round a second
        env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    url = f"http://127.0.0.1:{dashboard}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        # The dashboard's job API can answer before the raylet is up: also wait for
        # `ray start` to say the runtime started, else a job would sit PENDING.
        while not (_started(log_path) and _job_api_ready(url, token)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"ray head did not come up (exit {process.poll()}):\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield RayHead(
            dashboard_url=url,
            gcs_address=f"127.0.0.1:{gcs}",
            temp_dir=temp_dir,
            log_path=log_path,
            token=token,
            token_path=token_path,
            env=env,
        )
    finally:
        _stop(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the head: SIGTERM to ``ray start``, then SIGKILL whatever is left of its group.

    Measured here: SIGTERM to the ``ray start --block`` process alone stops its
    children in order (raylet before GCS) in about 7 s. SIGTERM to the whole group
    kills the GCS first, and the raylet then waits ~30 s for it to come back.
    """
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)
    # Anything still in the head's session (a stuck raylet, a job driver) goes now.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
