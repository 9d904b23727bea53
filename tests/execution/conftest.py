"""One embedded Ray instance for the sweep tests that need one (package scope: it is
shut down after the last test of this package, before other packages start their own).

Its :class:`~sweep.execution.pool.WorkerPool` keeps the worker actors, with their loaded
models, between the sweeps of the package: :func:`tests.execution.running.sweep` hands
it to ``sweep run`` (click's context object), so each test still runs a real sweep
through Ray without paying a worker start-up per run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.execution import running


@pytest.fixture(scope="package")
def ray_session() -> Iterator[Any]:
    """The package's Ray, and the worker pool its sweeps share (kept workers)."""
    import ray

    from sweep.execution.pool import WorkerPool

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with WorkerPool(keep=True) as pool, running.using(pool):
            yield pool
    finally:
        ray.shutdown()
