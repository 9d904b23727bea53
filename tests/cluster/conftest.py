"""Fixtures for the cluster tests: one real Ray head per test module (see head.py).

A head costs seconds and hundreds of MB on this 2-core machine, so each module
that needs one starts exactly one (module scope) and stops it at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.head import RayHead, running_head


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    """A head with token authentication ON (``RAY_AUTH_MODE=token``, a fresh token)."""
    with running_head(auth=True) as head:
        yield head


@pytest.fixture(scope="module")
def ray_head_no_auth() -> Iterator[RayHead]:
    """A head with token authentication OFF (``RAY_AUTH_MODE=disabled``)."""
    with running_head(auth=False) as head:
        yield head
