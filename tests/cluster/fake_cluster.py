"""A multi-node Ray cluster on this one machine, with GPUs it does not have, on 127.0.0.1.

:func:`fake_gpu_cluster` starts a head and worker nodes with
:class:`ray.cluster_utils.Cluster` (each node its own raylet and object store, as on
separate machines), connects this process as the driver, and tears it all down.
Worker nodes *declare* GPUs (``num_gpus``): Ray schedules on them as on real ones
and sets ``CUDA_VISIBLE_DEVICES`` for the actors that got one; PyTorch then finds
no CUDA device and computes on the CPU, with the same results.

Isolation from whatever else runs on this machine:

- Loopback only. On Linux Ray replaces ``127.0.0.1`` by the machine's routable
  address (``resolve_ip_for_localhost``) unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
  is false, its single-machine mode; it is read when Ray is imported, so both the
  variable (for the node processes started here) and the constant (for this already
  running process) are switched for the cluster's lifetime and restored after.
- A fresh short ``temp_dir`` per cluster (Ray puts unix sockets there: 108-byte path
  limit), and a free port for the head's dashboard agent, which otherwise takes the
  fixed default 52365 that another Ray instance on the machine may hold.
- ``Cluster`` writes its address to the default ``/tmp/ray/ray_current_cluster``,
  where a plain ``ray.init()`` elsewhere would find it (NOTES.md): removed at once.

Nodes report the whole host RAM as ``memory``: nothing here schedules on it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.head import free_ports

LOOPBACK = "127.0.0.1"
SINGLE_MACHINE_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
HEAD_CPUS = 1  # the head may run a CPU task, never a GPU cell: it declares no GPU
WORKER_CPUS = 2
NODE_WAIT_S = 60.0  # a node registering with the GCS (seconds on this 2-core machine)


@dataclass
class FakeCluster:
    """A running cluster: its address, its nodes by role, and the ``Cluster`` handle."""

    cluster: Any  # ray.cluster_utils.Cluster
    temp_dir: Path
    head_id: str
    gpu_nodes: dict[str, Any] = field(default_factory=dict)  # node id -> ray._private.node.Node
    cpu_nodes: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_gpu_node(self, *, num_gpus: int = 1, num_cpus: int = WORKER_CPUS) -> str:
        node = self.cluster.add_node(
            num_cpus=num_cpus, num_gpus=num_gpus, node_ip_address=LOOPBACK, temp_dir=str(self.temp_dir)
        )
        self.gpu_nodes[node.node_id] = node
        return node.node_id

    def add_cpu_node(self, *, num_cpus: int = WORKER_CPUS) -> str:
        node = self.cluster.add_node(
            num_cpus=num_cpus, num_gpus=0, node_ip_address=LOOPBACK, temp_dir=str(self.temp_dir)
        )
        self.cpu_nodes[node.node_id] = node
        return node.node_id

    def remove(self, node_id: str) -> None:
        """Kill every process of a worker node at once (no graceful drain: a lost machine)."""
        node = self.gpu_nodes.pop(node_id, None) or self.cpu_nodes.pop(node_id)
        self.cluster.remove_node(node, allow_graceful=False)


@contextlib.contextmanager
def fake_gpu_cluster(
    *, gpu_nodes: int = 2, gpus_per_node: int = 1, cpu_nodes: int = 0
) -> Iterator[FakeCluster]:
    """Head (``HEAD_CPUS`` CPU, no GPU) + ``gpu_nodes`` GPU nodes + ``cpu_nodes`` CPU-only nodes.

    This process is connected to it as the driver (``ray.init(address=...)``) while
    the context is open; ``sweep.execution.pool`` then uses that connection as is.
    """
    import ray
    from ray._common.utils import get_ray_address_file
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; the fake cluster needs its own")
    saved_var = os.environ.get(SINGLE_MACHINE_VAR)
    saved_const = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    cluster = None
    try:
        (agent_port,) = free_ports(1)
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": HEAD_CPUS, "num_gpus": 0, "node_ip_address": LOOPBACK,
                "temp_dir": str(temp_dir), "include_dashboard": False,
                "dashboard_agent_listen_port": agent_port,
            },
        )  # fmt: skip
        _forget_default_address(get_ray_address_file(None), cluster.address)
        fake = FakeCluster(cluster=cluster, temp_dir=temp_dir, head_id=cluster.head_node.node_id)
        for _ in range(gpu_nodes):
            fake.add_gpu_node(num_gpus=gpus_per_node)
        for _ in range(cpu_nodes):
            fake.add_cpu_node()
        cluster.wait_for_nodes(timeout=NODE_WAIT_S)
        ray.init(address=cluster.address, log_to_driver=False)
        yield fake
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        if saved_var is None:
            os.environ.pop(SINGLE_MACHINE_VAR, None)
        else:
            os.environ[SINGLE_MACHINE_VAR] = saved_var
        shutil.rmtree(temp_dir, ignore_errors=True)


def _forget_default_address(path: str, address: str) -> None:
    """Remove the default address file if it points at this cluster (and only then)."""
    with contextlib.suppress(OSError):
        if Path(path).read_text().strip() == address:
            Path(path).unlink()
