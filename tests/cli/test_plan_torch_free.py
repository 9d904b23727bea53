"""``sweep plan`` checks a spec's attacks from their declarations (sweep.attacks.declared)
and so never imports torch (about 2 s of a plan's CPU). ``sweep validate --no-code``
still does: it probes each model on a sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.execution.specs import base_spec, write_spec
from tests.spec.test_ids_unchanged import ATTACKS


def test_plan_imports_no_torch(tmp_path: Path) -> None:
    spec = base_spec(tmp_path / "out", attacks=ATTACKS,
                     epsilons={"linf": [0.1], "l2": [1.0], "l1": [5.0], "l0": [1.0]})
    path = write_spec(tmp_path / "spec.yaml", spec)
    code = (
        "import sys, json; from click.testing import CliRunner; from sweep.cli.main import cli; "
        f"r = CliRunner().invoke(cli, ['plan', {str(path)!r}, '--show', '0']); "
        "print(json.dumps({'code': r.exit_code, 'out': r.output, 'torch': 'torch' in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["code"] == 0, got["out"]
    assert f"x {len(ATTACKS)} attack(s)" in got["out"]
    assert got["torch"] is False, "sweep plan imported torch"
