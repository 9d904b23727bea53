"""The node types a Ray cluster's autoscaler can launch: what a cell shape may wait for.

The live nodes say what a cluster *has*; an autoscaled cluster can also *get* nodes
of the types in its autoscaler config (``available_node_types`` of ``cluster.yaml``,
the worker groups of a KubeRay ``RayCluster``), up to each type's ``max_workers``.
The driver refuses a cell shape only when neither a live node nor a launchable type
could ever hold it (``sweep.execution.placement.plan_workers``), and asks for the others.

Where the node types are read, first found wins:

1. the cluster config the autoscaler reports to the GCS (``ClusterConfig``, Ray's
   ``GlobalState.get_cluster_config``; autoscaler v2 and KubeRay publish it);
2. the config file of the autoscaler (v1 monitor) of this cluster running on this
   machine, named by its ``--autoscaling-config`` argument: ``ray up`` starts the
   head with ``~/ray_bootstrap_config.yaml`` there, a hand-started head with
   ``ray start --head --autoscaling-config=CFG``. A submitted sweep's driver runs on
   the head, where the monitor runs, so it finds it.

Neither found: ``None``. Then :func:`autoscaler_running` tells a fixed cluster
(plan on the live nodes alone) from an autoscaler whose node types are not
readable from here, such as KubeRay's, which runs in a sidecar container and reads
the ``RayCluster`` from Kubernetes: the driver then refuses no shape, asks for up to
``resources.max_workers`` workers, and waits for them at most ``scale_timeout``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MONITOR_SCRIPT = "autoscaler/_private/monitor.py"  # Ray's v1 autoscaler process


@dataclass(frozen=True)
class NodeType:
    """One kind of node the autoscaler launches: its Ray resources and how many at most."""

    name: str
    resources: Mapping[str, float]
    max_count: int


def from_autoscaler_config(config: Mapping[str, Any]) -> list[NodeType]:
    """The worker node types of a Ray autoscaler config (``cluster.yaml`` format).

    The head type is left out (the head is up, so it is a live node); a type's count
    is its own ``max_workers`` bounded by the cluster-wide ``max_workers``; types that
    can never be launched (``max_workers: 0``) are left out.
    """
    cluster_max = int(config.get("max_workers", 2**31))
    head = config.get("head_node_type")
    out = []
    for name, entry in (config.get("available_node_types") or {}).items():
        if name == head or not isinstance(entry, Mapping):
            continue
        count = min(int(entry.get("max_workers", cluster_max)), cluster_max)
        resources = {str(k): float(v) for k, v in (entry.get("resources") or {}).items()}
        if count > 0:
            out.append(NodeType(str(name), resources, count))
    return out


def launchable(gcs_address: str) -> list[NodeType] | None:
    """The node types this cluster's autoscaler can launch, or None when none is known."""
    reported = _reported_cluster_config()
    if reported is not None:
        return reported
    path = _monitor_config_path(gcs_address)
    if path is None:
        return None
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError:
        return None
    config = yaml.safe_load(text)  # JSON is YAML too
    return from_autoscaler_config(config) if isinstance(config, Mapping) else None


def autoscaler_running() -> bool:
    """Whether an autoscaler with node types of its own serves the connected cluster.

    Read from the status Ray's (v1) autoscaler publishes every round (the KV key
    ``__autoscaling_status``, what ``ray status`` prints): a fixed cluster's monitor
    runs a read-only provider whose node types are the live nodes, named
    ``node_<node id>`` (``format_readonly_node_type``); a real autoscaler's are the
    names of its config (``gpu_worker``, a KubeRay group name).
    """
    from ray._private.ray_constants import DEBUG_AUTOSCALING_STATUS
    from ray.experimental.internal_kv import _internal_kv_get

    try:
        raw = _internal_kv_get(DEBUG_AUTOSCALING_STATUS)
        mapping = json.loads(raw or b"{}").get("autoscaler_report", {}).get("node_type_mapping") or {}
    except Exception:  # no status yet, or a layout this version does not know
        return False
    return any(not str(t).startswith("node_") for t in mapping.values())


def _reported_cluster_config() -> list[NodeType] | None:
    from ray._private.state import state

    try:
        config = state.get_cluster_config()
    except Exception:  # an older GCS without the key, or no connection: not reported
        return None
    if config is None or not config.node_group_configs:
        return None
    return [
        NodeType(group.name, {k: float(v) for k, v in group.resources.items()},
                 2**31 if group.max_count == -1 else int(group.max_count))
        for group in config.node_group_configs
        if group.max_count != 0
    ]  # fmt: skip


def _monitor_config_path(gcs_address: str) -> str | None:
    """``--autoscaling-config`` of the v1 monitor serving ``gcs_address`` on this machine."""
    port = gcs_address.rpartition(":")[2]
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: no process table to read
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith(MONITOR_SCRIPT) for a in argv):
            continue
        options = dict(a.partition("=")[::2] for a in argv if a.startswith("--"))
        if options.get("--gcs-address", "").rpartition(":")[2] != port:
            continue  # another cluster's autoscaler on this machine
        return options.get("--autoscaling-config") or None
    return None


def describe(types: list[NodeType]) -> str:
    """``gpu_node (CPU 1, GPU 1) x3`` for messages."""
    def shape(t: NodeType) -> str:
        parts = ", ".join(f"{k} {v:g}" for k, v in sorted(t.resources.items()) if k in ("CPU", "GPU"))
        return f"{t.name} ({parts or 'no CPU/GPU'}) x{t.max_count}"

    return "; ".join(shape(t) for t in types) or "none"

