"""Imports run one way: the CLI uses the cluster package, never the reverse (issue 10).

The job's entrypoint calls the ``sweep`` command group, so it lives in the CLI
(``sweep/cli/job_entrypoint.py``) and the shipped launcher runs it from there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sweep.cluster
from sweep.cluster import launcher

PACKAGE = Path(sweep.cluster.__file__).parent


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_cluster_package_never_imports_the_cli(path: Path) -> None:
    upward = sorted(n for n in imported(path) if n == "sweep.cli" or n.startswith("sweep.cli."))
    assert not upward, f"{path.name} imports {upward}"


def test_the_launcher_runs_the_cli_entrypoint_module() -> None:
    from sweep.cli import job_entrypoint

    assert f'-m {job_entrypoint.__name__} "$@"' in launcher.SCRIPT

