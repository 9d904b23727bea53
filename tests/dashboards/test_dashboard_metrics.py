"""The live-sweep metrics reach Ray's Prometheus export, under the names the Grafana
dashboard queries."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "attack-sweep-live.json"
METRIC = re.compile(r"\bray_attack_sweep_[a-z_]+")


def dashboard_metrics() -> set[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return {m for e in exprs for m in METRIC.findall(e)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def test_dashboard_is_valid_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    assert dashboard_metrics() >= {
        "ray_attack_sweep_cells_done_total",
        "ray_attack_sweep_samples_total",
        "ray_attack_sweep_cell_seconds_bucket",
    }


@pytest.mark.ray
@pytest.mark.slow
def test_worker_metrics_appear_in_rays_prometheus_export(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    port = free_port()
    ray.init(
        address="local",  # never join a cluster left behind by another test
        num_cpus=1,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _metrics_export_port=port,
        _system_config={"metrics_report_interval_ms": 1000},
        configure_logging=False,
        log_to_driver=False,
    )
    try:

        @ray.remote
        def finish_cell() -> None:
            from sweep.execution.telemetry import record_cell

            record_cell("sweep-x", "digits-cnn", "pgd", samples=64, seconds=1.5)

        ray.get(finish_cell.remote(), timeout=120)
        from sweep.execution.telemetry import record_pool

        record_pool("sweep-x", placed=3, waiting=1, gpus=1.5)  # from the driver, as sweep.execution.dispatcher does
        wanted = dashboard_metrics()
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = scrape(port)
            if wanted <= set(METRIC.findall(text)):
                break
            time.sleep(1)
    finally:
        ray.shutdown()
    exported = set(METRIC.findall(text))
    assert wanted <= exported, (
        f"dashboard queries {sorted(wanted - exported)} that Ray did not export"
    )
    samples = [
        line for line in text.splitlines() if line.startswith("ray_attack_sweep_samples_total{")
    ]
    assert any(
        'sweep="sweep-x"' in s and 'model="digits-cnn"' in s and 'attack="pgd"' in s
        and s.rsplit(" ", 1)[1] == "64.0"
        for s in samples
    ), samples  # fmt: skip
    pool = [line for line in text.splitlines() if line.startswith(("ray_attack_sweep_workers{",
                                                                     "ray_attack_sweep_gpus_in_use{"))]
    assert any('state="placed"' in s and s.endswith(" 3.0") for s in pool), pool
    assert any('state="waiting"' in s and s.endswith(" 1.0") for s in pool), pool
    assert any(s.startswith("ray_attack_sweep_gpus_in_use{") and s.endswith(" 1.5") for s in pool), pool
