"""A real Ray autoscaler on this one machine: a head whose GPU nodes come and go on demand.

:func:`autoscaling_cluster` starts a head the way users start one
(:func:`tests.cluster.head.running_head`) with ``--autoscaling-config``: Ray's own
autoscaler (the v1 monitor) with its ``fake_multinode`` provider, which launches a
node as a local raylet with the fake resources of its node type when demand
appears, and stops it after ``idle_timeout_minutes`` without work. This process
joins as the sweep driver.

Node types (:func:`fake_config`), from zero nodes up:

- ``gpu_node``: 1 CPU + 1 (declared) GPU, ``min_workers: 0``, up to 3;
- ``gpu2_unavailable``: 1 CPU + 2 GPUs, up to 1, whose launches always fail (its
  ``object_store_memory`` is below Ray's minimum), like an instance type the cloud
  has no capacity for: a cell shape only it fits is possible but never arrives.

Facts checked on Ray 2.60 (NOTES.md): the wheel lacks the ``example.yaml`` that
``ray.cluster_utils.AutoscalingCluster`` reads, so the config is written here; off
port 6379 the provider needs ``gcs_address`` or its nodes never join; the fake
provider runs only with ``RAY_FAKE_CLUSTER=1``. Fake nodes' processes carry the
head's temp folder in their command lines and die with the head's process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.fake_cluster import SINGLE_MACHINE_VAR
from tests.cluster.head import RayHead, running_head

GPU_TYPE, GPU_NODES_MAX = "gpu_node", 3
UNAVAILABLE_TYPE = "gpu2_unavailable"
IDLE_TIMEOUT_MINUTES = 0.1  # an idle fake node goes after 6 s (cluster.yaml: 10 minutes)
NODE_WAIT_S = 120.0  # launch + raylet start of a fake node, on 2 busy cores


def fake_config(gcs_address: str) -> dict[str, Any]:
    """An autoscaler config (``cluster.yaml`` format) for the ``fake_multinode`` provider."""
    return {
        "cluster_name": "sweep-autoscaling-test",
        "max_workers": GPU_NODES_MAX + 1,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,  # the head is not on 6379
            "use_node_id_as_ip": True,  # all nodes share 127.0.0.1
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "ubuntu"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {}, "node_config": {}, "max_workers": 0},
            GPU_TYPE: {"resources": {"CPU": 1, "GPU": 1}, "node_config": {},
                       "min_workers": 0, "max_workers": GPU_NODES_MAX},
            UNAVAILABLE_TYPE: {"resources": {"CPU": 1, "GPU": 2, "object_store_memory": 1},
                               "node_config": {}, "min_workers": 0, "max_workers": 1},
        },
        **{key: [] for key in ("cluster_synced_files", "initialization_commands", "setup_commands",
                               "head_setup_commands", "worker_setup_commands",
                               "head_start_ray_commands", "worker_start_ray_commands")},
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
    }  # fmt: skip


@dataclass
class AutoscalingCluster:
    """The running head, with this process connected to it as the driver."""

    head: RayHead

    @property
    def address(self) -> str:
        return self.head.gcs_address

    def gpu_nodes(self) -> set[str]:
        """Ids of the live nodes that have GPUs (the autoscaler's nodes)."""
        import ray

        return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0}

    def wait_for_gpu_nodes(self, count: int, timeout: float = NODE_WAIT_S) -> float:
        """Seconds until exactly ``count`` GPU nodes are alive."""
        t0 = time.monotonic()
        while len(self.gpu_nodes()) != count:
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"{len(self.gpu_nodes())} GPU nodes alive after {timeout:.0f}s, "
                                     f"expected {count}")
            time.sleep(0.5)
        return time.monotonic() - t0

    def kill_node(self, node_id: str) -> int:
        """SIGKILL the raylet of ``node_id``, as a machine lost at once; returns its pid.

        Its worker processes exit once their raylet is gone, and the GCS marks the
        node dead; the fake provider still lists it until the autoscaler reaps it.
        """
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv[0].endswith(b"/raylet") and f"--node_id={node_id}".encode() in argv:
                    os.kill(int(entry.name), signal.SIGKILL)
                    return int(entry.name)
        raise AssertionError(f"no raylet of node {node_id} on this machine")


@contextlib.contextmanager
def autoscaling_cluster() -> Iterator[AutoscalingCluster]:
    """An autoscaling head (no GPU, 1 CPU, no GPU node yet), this process its driver."""
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; the cluster needs its own")
    saved = {k: os.environ.get(k) for k in (SINGLE_MACHINE_VAR, "RAY_AUTH_MODE")}
    saved_const = ray_constants.ENABLE_RAY_CLUSTER
    # loopback only for this process's own Ray (read at import: switch the constant too)
    os.environ[SINGLE_MACHINE_VAR] = "0"
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with running_head(auth=False, num_cpus=1, autoscaling=fake_config) as head:
            try:
                ray.init(address=head.gcs_address, log_to_driver=False)
                yield AutoscalingCluster(head)
            finally:
                ray.shutdown()
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
