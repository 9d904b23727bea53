"""Running ``sweep`` in this process and reading back its rows, for the sweep tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from sweep.cli.main import cli

KEY = ["cell_id", "sample_id", "epsilon"]


def sweep(*args: str):
    """``sweep ARGS`` (``run`` without its progress bar); the click result."""
    return CliRunner().invoke(cli, [*args, "--no-progress"] if args[0] == "run" else list(args),
                              catch_exceptions=False)


def rows(output: Path) -> pd.DataFrame:
    """All rows, in a fixed order, without the wall-time column (the one thing a rerun changes)."""
    df = pd.read_parquet(output).drop(columns=["cell_seconds"])
    return df.sort_values(KEY).reset_index(drop=True)
