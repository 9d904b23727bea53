"""Live sweep metrics exported through Ray's Prometheus endpoint (``ray.util.metrics``).

Workers call :func:`record_cell` after each cell; Ray aggregates and exports
``attack_sweep_cells_done``, ``attack_sweep_samples`` and
``attack_sweep_cell_seconds`` for the Grafana dashboard in ``dashboards/``.
The driver calls :func:`record_pool` when its worker pool changes: the gauges
``attack_sweep_workers`` (label ``state``: placed / waiting) and
``attack_sweep_gpus_in_use`` draw the pool following an autoscaled cluster.
Outside a Ray worker or driver this does nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _metrics() -> dict[str, Any] | None:
    import ray

    if not ray.is_initialized():
        return None
    from ray.util.metrics import Counter, Histogram

    keys = ("sweep", "model", "attack")
    return {
        "cells": Counter("attack_sweep_cells_done", "Cells finished", tag_keys=keys),
        "samples": Counter("attack_sweep_samples", "Samples attacked", tag_keys=keys),
        "seconds": Histogram(
            "attack_sweep_cell_seconds",
            "Attack time per cell (s)",
            boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
            tag_keys=keys,
        ),
    }


def record_cell(sweep: str, model: str, attack: str, samples: int, seconds: float) -> None:
    """Count one finished cell of ``samples`` samples that took ``seconds`` to attack."""
    metrics = _metrics()
    if metrics is None:
        return
    tags = {"sweep": sweep, "model": model, "attack": attack}
    metrics["cells"].inc(1, tags=tags)
    metrics["samples"].inc(samples, tags=tags)
    metrics["seconds"].observe(seconds, tags=tags)


@lru_cache(maxsize=1)
def _pool_gauges() -> dict[str, Any] | None:
    import ray

    if not ray.is_initialized():
        return None
    from ray.util.metrics import Gauge

    return {
        "workers": Gauge("attack_sweep_workers", "Sweep workers, placed on a node or waiting for one",
                         tag_keys=("sweep", "state")),
        "gpus": Gauge("attack_sweep_gpus_in_use", "GPUs held by placed sweep workers", tag_keys=("sweep",)),
    }


def record_pool(sweep: str, placed: int, waiting: int, gpus: float) -> None:
    """The driver's worker pool now: ``placed`` workers holding ``gpus`` GPUs, ``waiting`` unplaced."""
    gauges = _pool_gauges()
    if gauges is None:
        return
    gauges["workers"].set(placed, tags={"sweep": sweep, "state": "placed"})
    gauges["workers"].set(waiting, tags={"sweep": sweep, "state": "waiting"})
    gauges["gpus"].set(gpus, tags={"sweep": sweep})
