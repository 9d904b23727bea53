"""Running ``sweep`` in this process and reading back its rows, for the sweep tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from click.testing import CliRunner

from sweep.cli.main import cli

KEY = ["cell_id", "sample_id", "epsilon"]

_pools: list[Any] = []  # the worker pool of the `ray_session` fixture while it is open


@contextlib.contextmanager
def using(pool: Any) -> Iterator[Any]:
    """While open, :func:`sweep` runs sweeps on ``pool`` (a kept :class:`~sweep.execution.pool.WorkerPool`)."""
    _pools.append(pool)
    try:
        yield pool
    finally:
        _pools.remove(pool)


def sweep(*args: str, pool: Any = None):
    """``sweep ARGS`` (``run`` without its progress bar); the click result. ``run`` uses
    ``pool``, else the one :func:`using` holds open, else a pool of its own."""
    pool = pool or (_pools[-1] if _pools else None)
    return CliRunner().invoke(cli, [*args, "--no-progress"] if args[0] == "run" else list(args),
                              obj=pool, catch_exceptions=False)


def rows(output: Path) -> pd.DataFrame:
    """All rows, in a fixed order, without the wall-time column (the one thing a rerun changes)."""
    df = pd.read_parquet(output).drop(columns=["cell_seconds"])
    return df.sort_values(KEY).reset_index(drop=True)
