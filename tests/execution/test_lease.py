"""The output lease (issue 15, case 9) without Ray: held by another process, it refuses
and names the holder; its holder killed, it is free at once (no stale lease)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from sweep.errors import SpecError
from sweep.execution.lease import LEASE_FILE, hold_output

HOLD = """
import sys, time
from pathlib import Path
from sweep.execution.lease import hold_output
with hold_output(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def other_holder(tmp_path):
    """Another process holding the lease of ``tmp_path / 'out'``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_held_output_is_refused_naming_the_holder(tmp_path, other_holder):
    lease = tmp_path / "out" / LEASE_FILE
    info = json.loads(lease.read_text())
    assert info["pid"] == other_holder.pid and info["host"] == socket.gethostname()
    with pytest.raises(SpecError) as err, hold_output(tmp_path / "out", echo=lambda m: None):
        pytest.fail("the lease was taken twice")
    message = str(err.value)
    assert err.value.field == "output" and f"pid {other_holder.pid} on host" in message
    assert str(lease) in message and len(message.splitlines()) == 1
    assert json.loads(lease.read_text())["pid"] == other_holder.pid  # untouched


def test_a_killed_holder_leaves_no_stale_lease(tmp_path, other_holder):
    os.kill(other_holder.pid, signal.SIGKILL)
    other_holder.wait()
    lease = tmp_path / "out" / LEASE_FILE
    assert json.loads(lease.read_text())["pid"] == other_holder.pid  # its details remain ...
    t0 = time.monotonic()
    with hold_output(tmp_path / "out"):  # ... but the kernel released its lock with it
        assert json.loads(lease.read_text())["pid"] == os.getpid()
    assert time.monotonic() - t0 < 5
    assert lease.read_text() == ""


def test_a_lease_is_released_on_error(tmp_path):
    with pytest.raises(RuntimeError), hold_output(tmp_path / "out"):
        raise RuntimeError("boom")
    with hold_output(tmp_path / "out"):
        pass
