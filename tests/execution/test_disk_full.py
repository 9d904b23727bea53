"""A full disk under the output (issue 15, case 6), on a real tmpfs of 512 KiB.

Expected: the cell that hits ENOSPC fails cleanly, the driver stops dispatching,
``sweep run`` exits 1 with one line saying the disk is full, where, and how to
resume; every manifest file stays whole; after space is freed a re-run resumes
and every row exists exactly once. Needs ``mount`` (root); skipped otherwise.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.execution.running import KEY, rows, sweep
from tests.execution.specs import base_spec, write_spec

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.ray, pytest.mark.slow]

CELLS = 32  # 2 models x 2 attacks x 8 shards of 4 samples; each shard file takes 8 KiB


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about ``leave`` bytes free on ``disk``."""
    import os

    st = os.statvfs(disk)
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - leave))
    return ballast


def _lines_parse(folder: Path) -> int:
    """Lines in the write-once files of a manifest folder (temp files aside), each whole JSON."""
    lines = 0
    for path in folder.glob("[!.]*"):
        data = path.read_text(encoding="utf-8")
        assert data.endswith(("\n", "}")), f"{path.name} ends in a torn line: {data[-200:]!r}"
        for line in data.splitlines():
            json.loads(line)
        lines += len(data.splitlines())
    return lines


def test_full_disk_stops_cleanly_and_resumes(small_disk, tmp_path):
    out = small_disk / "out"
    spec = base_spec(out, dataset={"name": "digits", "samples": 32, "shard_size": 4})
    path = write_spec(tmp_path / "spec.yaml", spec)
    ballast = _fill(small_disk, leave=48 * 1024)

    first = sweep("run", str(path))
    assert first.exit_code == 1, first.output
    assert "Traceback" not in first.output
    last = first.output.strip().splitlines()[-1]
    assert last.startswith("error: the disk holding ") and str(out) in last, last
    assert "No space left on device" in last and f"sweep run {path}" in last, last
    assert "not run: the disk holding the output is full" in first.output  # it stopped dispatching
    manifest = out / "_manifest"
    done = _lines_parse(manifest / "done")
    _lines_parse(manifest / "failures")
    json.loads((manifest / "plan.json").read_text())
    assert 0 < done < CELLS, done
    assert not list(out.glob("model=*/attack=*/.tmp-*")), "a temp file was left behind"

    ballast.unlink()
    second = sweep("run", str(path))
    assert second.exit_code == 0, second.output
    assert f"{CELLS} cells: " in second.output
    df = rows(out)
    assert df["cell_id"].nunique() == CELLS
    assert not df.duplicated(KEY).any()
    assert len(df) == 2 * 8 * 4 * (3 + 2)  # models x shards x samples x (linf + l2 epsilons)
