"""Small sweeps for the multi-node and fault tests, and the rows they are compared by.

Many small cells (16 digits samples per model x attack in shards of 2, say) of
the slow model (:mod:`tests.cluster.slow_models`), so a fault lands while most
cells are still to run, and the whole sweep still takes seconds.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from tests.cluster.head import VENV_BIN
from tests.execution.specs import write_spec

__all__ = ["ROW_KEY", "SweepThread", "driver_env", "rows", "slow_spec", "write_spec"]

ROW_KEY = ["cell_id", "sample_id", "epsilon"]
EPSILONS = [0.0, 0.1, 0.3]
SLOW_FACTORY = "tests.cluster.slow_models:slow_digits_cnn"


def slow_spec(
    output: Path, *, samples: int, shard_size: int, resources: dict[str, Any] | None = None,
    delay_s: float = 0.02, name: str = "faults",
) -> dict[str, Any]:
    """The slow digits CNN x the noise attack (L-inf), ``samples / shard_size`` cells."""
    spec: dict[str, Any] = {
        "name": name,
        "seed": 0,
        "output": str(output),
        "dataset": {"name": "digits", "samples": samples, "shard_size": shard_size},
        "models": [{"name": "slow-cnn", "factory": SLOW_FACTORY, "kwargs": {"delay_s": delay_s}}],
        "attacks": [{"name": "noise", "draws": 2}],
        "epsilons": {"linf": EPSILONS},
        "mlflow": {"enabled": False},
    }
    if resources:
        spec["resources"] = resources
    return spec


def rows(output: Path) -> pd.DataFrame:
    """Every row ``pd.read_parquet`` finds, in a fixed order, minus the wall-time column.

    ``cell_seconds`` is the only column a re-run changes; everything else is a
    function of the spec seed and the cell.
    """
    df = pd.read_parquet(output).drop(columns=["cell_seconds"])
    for col in ("model", "attack"):
        df[col] = df[col].astype(str)
    return df.sort_values(ROW_KEY).reset_index(drop=True)


def driver_env(ray_tmp: Path) -> dict[str, str]:
    """A ``sweep run`` subprocess's environment: its own Ray temp folder, loopback only,
    no cluster address, this process's environment otherwise (credentials included)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_TMPDIR=str(ray_tmp), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               RAY_USAGE_STATS_ENABLED="0", PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


class SweepThread:
    """``run_sweep(prep)`` in a background thread of this process (the Ray driver), so a
    test can strike mid-sweep; :meth:`outcome` joins it and re-raises its error."""

    def __init__(self, prep: Any) -> None:
        from sweep.execution.pipeline import run_sweep

        self._box: dict[str, Any] = {}

        def run() -> None:
            try:
                self._box["outcome"] = run_sweep(prep, progress=False, echo=lambda _: None)
            except BaseException as exc:  # re-raised in the test's thread by outcome()
                self._box["error"] = exc

        self.thread = threading.Thread(target=run, name="sweep-driver", daemon=True)
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def outcome(self, timeout: float) -> Any:
        self.thread.join(timeout=timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the sweep did not finish within {timeout:.0f}s")
        if "error" in self._box:
            raise self._box["error"]
        return self._box["outcome"]
