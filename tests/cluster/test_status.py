"""``sweep status``'s nodes and workers from Ray state-API records (no Ray needed)."""

from __future__ import annotations

from sweep.cluster.status import summarize


def test_placed_and_waiting_workers_on_the_live_nodes():
    nodes = [
        {"state": "ALIVE", "resources_total": {"CPU": 1}},  # the head
        {"state": "ALIVE", "resources_total": {"CPU": 4, "GPU": 1}},
        {"state": "ALIVE", "resources_total": {"CPU": 4, "GPU": 1}},
        {"state": "DEAD", "resources_total": {"CPU": 4, "GPU": 1}},  # preempted
    ]
    workers = [
        {"state": "ALIVE", "node_id": "a", "required_resources": {"GPU": 0.5, "CPU": 1}},
        {"state": "ALIVE", "node_id": "a", "required_resources": {"GPU": 0.5, "CPU": 1}},
        {"state": "ALIVE", "node_id": "b", "required_resources": {"GPU": 0.5, "CPU": 1}},
        {"state": "PENDING_CREATION", "node_id": None, "required_resources": {"GPU": 0.5}},
        {"state": "RESTARTING", "node_id": None, "required_resources": {"GPU": 0.5}},
        {"state": "DEAD", "node_id": "c", "required_resources": {"GPU": 0.5}},
    ]
    assert summarize(nodes, workers).lines() == {
        "nodes": "3 alive (2 with GPUs, 2 GPUs)",
        "workers": "3 placed on 2 node(s), using 1.5 GPUs; 2 waiting for a node",
    }
    assert summarize(nodes[:1], []).lines() == {"nodes": "1 alive (0 with GPUs, 0 GPUs)", "workers": "none"}
