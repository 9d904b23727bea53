"""Fixtures for the cluster tests: one real Ray head (see head.py) or S3 server
(s3_server.py) per test module that needs one.

A head costs seconds and hundreds of MB on this 2-core machine, so each module
that needs one starts exactly one (module scope) and stops it at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.head import RayHead, running_head
from tests.cluster.s3_server import CREDENTIALS, S3Server, running_s3_server


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    """A head with token authentication ON (``RAY_AUTH_MODE=token``, a fresh token)."""
    with running_head(auth=True) as head:
        yield head


@pytest.fixture(scope="module")
def ray_head_no_auth() -> Iterator[RayHead]:
    """A head with token authentication OFF (``RAY_AUTH_MODE=disabled``), started by the
    venv's ``ray start`` with the venv not on ``PATH`` (not activated)."""
    with running_head(auth=False, venv_on_path=False) as head:
        yield head


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (moto) on 127.0.0.1, with the dummy credentials
    in this process's environment (pyarrow's clients and subprocesses read them)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CREDENTIALS.items():
            mp.setenv(key, value)
        with running_s3_server() as server:
            yield server
