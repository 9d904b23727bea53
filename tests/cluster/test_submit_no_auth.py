"""``sweep submit / status`` against a real head with token authentication OFF.

Our client sends a token whenever it finds one (Ray's own client does so only in
token mode); a cluster without authentication must not mind. (Jobs themselves are
submitted in test_submit.py; a second sweep job here would add half a minute.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.head import RayHead
from tests.cluster.test_submit import run_in_process

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_the_head_answers_without_a_token(ray_head_no_auth: RayHead) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{ray_head_no_auth.dashboard_url}/api/jobs/", timeout=10) as r:
        assert r.status == 200


@pytest.mark.parametrize("token", [None, "f" * 64], ids=["no-token", "stray-token"])
def test_status_works_with_or_without_a_token_here(
    ray_head_no_auth: RayHead, token: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    env = ray_head_no_auth.client_env(**({"RAY_AUTH_TOKEN": token} if token else {}))
    result = run_in_process(["status", "--address", ray_head_no_auth.dashboard_url], env, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "no sweep jobs on this cluster" in result.output
