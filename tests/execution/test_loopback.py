"""A running ``sweep run``, seen from outside (issue 15, cases 12 and 9).

The test starts a real ``sweep run`` (its own embedded Ray) in a subprocess and,
while it runs:

- reads ``ss -ltnp`` for the listening TCP sockets of that process and all its
  descendants (GCS, raylet, agents, workers; other Ray instances on this shared
  machine are left out by PID): every one must be bound to a loopback address;
- starts a second ``sweep run`` of the same spec, which must be refused at once
  (exit 2, before Ray) naming the first run's PID and host; the first run then
  finishes with one done record per cell.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.execution.running import sweep as sweep_here
from tests.execution.specs import base_spec, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LOOPBACK_PREFIXES = ("127.", "[::ffff:127.", "[::1]")


def descendants(root: int) -> set[int]:
    """``root`` and every process below it, from ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def listening(pids: set[int]) -> dict[str, str]:
    """``{local address: process name}`` of the TCP listeners of ``pids``."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        owners = fields[5]
        for pid in pids:
            if f"pid={pid}," in owners:
                found[fields[3]] = owners.split('"')[1] if '"' in owners else owners
    return found


SLOW = {"name": "slow", "factory": "tests.cluster.slow_models:slow_digits_cnn",
        "kwargs": {"delay_s": 0.3}}  # keeps the first run busy while the second one knocks


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss")
def test_a_running_sweep_listens_on_loopback_only_and_holds_its_output(tmp_path):
    import ray

    ray_was_up = ray.is_initialized()  # the package's shared session, if an earlier test started it
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "spec.yaml", base_spec(out, models=[{"name": "digits-cnn"}, SLOW]))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # the run must do it by itself
    # the spec's factory lives in this repository's tests package
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    sweep = str(Path(sys.executable).parent / "sweep")
    proc = subprocess.Popen(
        [sweep, "run", str(spec), "--num-cpus", "1", "--no-progress"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    seen: dict[str, str] = {}
    second = None
    lease = out / "_manifest" / "lease"
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            seen.update(listening(descendants(proc.pid)))
            if second is None and lease.exists() and lease.stat().st_size:
                holder = json.loads(lease.read_text())
                assert holder["pid"] == proc.pid and holder["host"] == socket.gethostname()
                second = sweep_here("run", str(spec))
            time.sleep(0.2)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode == 0, output[-3000:]
    names = set(seen.values())
    # the run's own Ray was seen listening: GCS and raylet at least
    assert {"gcs_server", "raylet"} <= names, seen
    exposed = {addr: name for addr, name in seen.items() if not addr.startswith(LOOPBACK_PREFIXES)}
    assert not exposed, f"listening beyond loopback: {exposed}"

    assert second is not None, "the first run ended before its lease was seen"
    message = second.output.strip()
    assert second.exit_code == 2, message
    assert message.startswith("error: output:") and len(message.splitlines()) == 1, message
    assert f"pid {proc.pid} on host {socket.gethostname()}" in message, message
    assert "in use by another sweep run" in message and "sweep run" in message
    assert ray.is_initialized() == ray_was_up  # refused before Ray
    done = [json.loads(line)["cell_id"] for segment in (out / "_manifest" / "done").glob("[!.]*")
            for line in segment.read_text().splitlines()]
    assert len(done) == len(set(done)) == 8  # each cell once: the second run computed nothing
    assert lease.read_text() == ""  # released
