"""One embedded Ray instance for the sweep tests that need one (package scope: it is
shut down after the last test of tests/sweep, before other packages start their own).

Worker actors, with their loaded models, are kept between the sweeps of the package
(``SWEEP_KEEP_WORKERS=1``): each test still runs a real sweep through Ray, without
paying a worker start-up per run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package")
def ray_session() -> Iterator[None]:
    import ray

    from sweep.driver import release_workers

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    os.environ["SWEEP_KEEP_WORKERS"] = "1"
    try:
        yield
    finally:
        os.environ.pop("SWEEP_KEEP_WORKERS", None)
        release_workers()
        ray.shutdown()
