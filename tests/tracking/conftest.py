"""The embedded Ray of tests/execution, started again for this package."""

from tests.execution.conftest import ray_session  # noqa: F401  (a fixture)
