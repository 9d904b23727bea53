"""Headless Chromium for the report tests, driven through its command line only.

``--dump-dom`` prints the DOM after the page's scripts ran; ``--screenshot``
writes a PNG; with ``--enable-logging=stderr`` every console message and
uncaught exception appears on stderr as a ``CONSOLE`` line. No extra Python
dependency (selenium / DevTools client) is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    # any host name resolves to nothing: a page that tried the network would fail loudly
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
)
CONSOLE = re.compile(r":CONSOLE[(:]")


@dataclass(frozen=True)
class PageRun:
    stdout: str
    console: list[str]


def chromium() -> str:
    """Path of a Chromium binary; skips the test if there is none, unless
    ``SWEEP_REQUIRE_BROWSER=1`` (CI), where a missing browser fails it."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("SWEEP_REQUIRE_BROWSER") == "1":
        pytest.fail("SWEEP_REQUIRE_BROWSER=1 but no chromium on PATH")
    pytest.skip("headless Chromium not installed")


def run_page(url: str, *extra: str, window: str = "1280,2400", timeout: float = 90) -> PageRun:
    """Open ``url`` once in a fresh profile with ``extra`` flags (e.g. ``--dump-dom``)."""
    binary = chromium()
    with tempfile.TemporaryDirectory(prefix="sweep-chromium-") as profile:
        proc = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={window}", *extra, url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise AssertionError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    console = [line for line in proc.stderr.splitlines() if CONSOLE.search(line)]
    return PageRun(stdout=proc.stdout, console=console)


def dump_dom(path: Path, fragment: str = "") -> PageRun:
    return run_page(path.resolve().as_uri() + fragment, "--dump-dom")


def screenshot(path: Path, png: Path) -> PageRun:
    png.parent.mkdir(parents=True, exist_ok=True)
    return run_page(path.resolve().as_uri(), f"--screenshot={png}")
