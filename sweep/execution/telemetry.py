"""Live sweep metrics exported through Ray's Prometheus endpoint (``ray.util.metrics``).

Workers call :func:`record_cell` after each cell; Ray aggregates and exports
``attack_sweep_cells_done``, ``attack_sweep_samples`` and
``attack_sweep_cell_seconds`` for the Grafana dashboard in ``dashboards/``.
The driver calls :func:`record_pool` when its worker pool changes: the gauges
``attack_sweep_workers`` (label ``state``: placed / waiting) and
``attack_sweep_gpus_in_use`` draw the pool following an autoscaled cluster.
Outside a Ray worker or driver this does nothing.

Metrics are a view, not a result: :func:`record_cell` never raises. It runs after
the cell's Parquet file is written, so an exception here used to fail a cell whose
rows were already on disk (and readable) but never recorded in the manifest. Tag
values are percent-encoded as the results folders are (``model=%E6%A8%A1...``):
Ray's metric tags take ASCII only (a model named ``模型🙂`` raised
``UnicodeEncodeError``).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)


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
    try:
        metrics = _metrics()
        if metrics is None:
            return
        tags = {"sweep": tag_value(sweep), "model": tag_value(model), "attack": tag_value(attack)}
        metrics["cells"].inc(1, tags=tags)
        metrics["samples"].inc(samples, tags=tags)
        metrics["seconds"].observe(seconds, tags=tags)
    except Exception as exc:  # never fail a cell whose rows are written (module docstring)
        log.warning("attack-sweep: cell metrics not recorded: %s: %s", type(exc).__name__, exc)


def tag_value(name: str) -> str:
    """``name`` as a metric tag: ASCII, percent-encoded beyond printable ASCII (as folder names)."""
    return quote(name, safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")


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
    """The driver's worker pool now: ``placed`` workers holding ``gpus`` GPUs, ``waiting``
    unplaced. Never raises, as :func:`record_cell`: a gauge must not stop a sweep."""
    try:
        gauges = _pool_gauges()
        if gauges is None:
            return
        gauges["workers"].set(placed, tags={"sweep": tag_value(sweep), "state": "placed"})
        gauges["workers"].set(waiting, tags={"sweep": tag_value(sweep), "state": "waiting"})
        gauges["gpus"].set(gpus, tags={"sweep": tag_value(sweep)})
    except Exception as exc:
        log.warning("attack-sweep: pool metrics not recorded: %s: %s", type(exc).__name__, exc)
