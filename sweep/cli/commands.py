"""Commands to print for the user: spelled so they run as printed from where the user stands.

A user who started ``.venv/bin/sweep run ...`` without activating the venv has no
``python`` with pandas, no ``sweep`` and no ``mlflow`` on ``PATH``. So a printed
command names the interpreter that ran the sweep, and a console script by its bare
name only when ``PATH`` finds that same script; otherwise by its path (relative to
the current folder when it lies below it, e.g. ``.venv/bin/sweep``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def _spell(path: Path) -> str:
    """``path`` relative to the current folder when below it, else absolute; shell-quoted."""
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(Path.cwd())
    except ValueError:
        return shlex.quote(str(absolute))
    return shlex.quote(str(relative) if relative.parent != Path(".") else f"./{relative}")


def _same(found: str | None, path: Path) -> bool:
    # compared unresolved on purpose: a venv's python is a symlink to the system's,
    # which resolves to the same file but lacks the venv's packages
    return found is not None and os.path.abspath(found) == os.path.abspath(path)


def python() -> str:
    """The interpreter running this process, as a command (it has pandas and pyarrow)."""
    if _same(shutil.which("python"), Path(sys.executable)):
        return "python"
    return _spell(Path(sys.executable))


def program(name: str) -> str:
    """Console script ``name`` (``sweep``, ``mlflow``) of this interpreter's environment:
    the bare name when ``PATH`` resolves it to that script, else its path."""
    beside = Path(sys.executable).parent / name
    if not beside.exists():
        return name  # not installed beside the interpreter: PATH is all we have
    if _same(shutil.which(name), beside):
        return name
    return _spell(beside)
