"""Node types read from an autoscaler config (the format of cluster.yaml), without Ray."""

from __future__ import annotations

from pathlib import Path

import yaml

from sweep.execution.node_types import NodeType, describe, from_autoscaler_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_worker_type_of_cluster_yaml():
    types = from_autoscaler_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    # the head type is up already (a live node), so only the worker type is launchable
    assert types == [NodeType("gpu_worker", {"CPU": 4.0, "GPU": 1.0}, max_count=8)]
    assert describe(types) == "gpu_worker (CPU 4, GPU 1) x8"


def test_counts_are_bounded_by_the_cluster_and_unlaunchable_types_left_out():
    config = {
        "max_workers": 5,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 8}, "max_workers": 0},
            "big": {"resources": {"CPU": 16, "GPU": 8}, "max_workers": 10},
            "off": {"resources": {"CPU": 4, "GPU": 1}, "max_workers": 0},
            "default_count": {"resources": {"CPU": 2}},
        },
    }
    assert from_autoscaler_config(config) == [
        NodeType("big", {"CPU": 16.0, "GPU": 8.0}, max_count=5),
        NodeType("default_count", {"CPU": 2.0}, max_count=5),
    ]
