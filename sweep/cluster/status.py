"""Nodes and sweep workers of a cluster, for ``sweep status``: what the pool looks like now.

Read through Ray's state API on the dashboard (``/api/v0/nodes``, ``/api/v0/actors``),
the same address and token as the Job API, so ``sweep status`` needs nothing more
than ``sweep submit`` does. A sweep's workers are the ``RayCellWorker`` actors
(:mod:`sweep.execution.dispatcher`): *placed* ones run on a node (Ray state ``ALIVE``); *waiting*
ones are the demand the autoscaler launches nodes for (``PENDING_CREATION``,
``DEPENDENCIES_UNREADY``) or restart after their node was lost (``RESTARTING``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WORKER_CLASSES: tuple[str, ...] = ("RayCellWorker",)
WAITING_STATES = frozenset({"PENDING_CREATION", "DEPENDENCIES_UNREADY", "RESTARTING"})
LIST_LIMIT = 10_000


@dataclass(frozen=True)
class PoolView:
    """The cluster's live nodes and the sweep workers on them (one job's, or all)."""

    nodes: int
    gpu_nodes: int
    gpus: float
    workers_placed: int
    workers_waiting: int
    worker_nodes: int  # nodes with at least one placed worker
    gpus_in_use: float  # by placed workers

    def lines(self) -> dict[str, str]:
        """``{"nodes": ..., "workers": ...}`` as ``sweep status`` prints them."""
        nodes = f"{self.nodes} alive ({self.gpu_nodes} with GPUs, {self.gpus:g} GPUs)"
        if not (self.workers_placed or self.workers_waiting):
            return {"nodes": nodes, "workers": "none"}
        workers = (f"{self.workers_placed} placed on {self.worker_nodes} node(s), using "
                   f"{self.gpus_in_use:g} GPUs; {self.workers_waiting} waiting for a node")
        return {"nodes": nodes, "workers": workers}


def summarize(nodes: Sequence[Mapping[str, Any]], workers: Sequence[Mapping[str, Any]]) -> PoolView:
    """A :class:`PoolView` from state-API records (dicts of ``NodeState`` / ``ActorState``)."""
    alive = [n for n in nodes if n.get("state") == "ALIVE"]
    gpu_counts = [float((n.get("resources_total") or {}).get("GPU", 0)) for n in alive]
    placed = [w for w in workers if w.get("state") == "ALIVE"]
    return PoolView(
        nodes=len(alive),
        gpu_nodes=sum(1 for g in gpu_counts if g > 0),
        gpus=sum(gpu_counts),
        workers_placed=len(placed),
        workers_waiting=sum(1 for w in workers if w.get("state") in WAITING_STATES),
        worker_nodes=len({w.get("node_id") for w in placed}),
        gpus_in_use=sum(float((w.get("required_resources") or {}).get("GPU", 0)) for w in placed),
    )


def read(url: str, headers: Mapping[str, str], job_id: str | None = None) -> PoolView:
    """The pool of the cluster whose dashboard is ``url``; only job ``job_id``'s workers if given
    (the Ray job id, ``JobDetails.job_id``)."""
    from ray.util.state.api import StateApiClient
    from ray.util.state.common import ListApiOptions, StateResource

    client = StateApiClient(address=url, headers={"Content-Type": "application/json", **headers})
    nodes = client.list(StateResource.NODES, options=ListApiOptions(limit=LIST_LIMIT, detail=True),
                        raise_on_missing_output=False)  # fmt: skip
    workers: list[Any] = []
    for name in WORKER_CLASSES:
        filters: list[tuple[str, str, str]] = [("class_name", "=", name)]
        if job_id:
            filters.append(("job_id", "=", job_id))
        workers += client.list(StateResource.ACTORS,
                               options=ListApiOptions(limit=LIST_LIMIT, detail=True, filters=filters),
                               raise_on_missing_output=False)  # fmt: skip
    return summarize([_as_dict(n) for n in nodes], [_as_dict(w) for w in workers])


def _as_dict(record: Any) -> Mapping[str, Any]:
    return record if isinstance(record, Mapping) else vars(record)
