"""cluster.yaml against Ray's own launcher schema, and the KubeRay manifest's shape.

``validate_config(prepare_config(cfg))`` is what ``ray up`` runs before touching
a cloud (plain ``validate_config(cfg)`` rejects valid files; ``node_config`` is
passed to the cloud API unchecked, so typos there are not caught by either).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"
KUBERAY_YAML = REPO / "deploy" / "kuberay-raycluster.yaml"


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_rays_schema(cluster) -> None:
    prepared = validate(cluster)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def gpu_types(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: t for name, t in cfg["available_node_types"].items() if t["resources"].get("GPU", 0) >= 1}


def test_cluster_yaml_has_a_cpu_head_and_an_autoscaled_gpu_worker_type(cluster) -> None:
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = gpu_types(cluster)
    assert len(workers) == 1
    (worker,) = workers.values()
    assert 0 <= worker["min_workers"] < worker["max_workers"] <= cluster["max_workers"]
    # from zero GPU nodes: the sweep's waiting workers are the demand that starts them
    assert worker["min_workers"] == 0
    assert "--autoscaling-config" in " ".join(cluster["head_start_ray_commands"])
    assert worker["node_config"]["InstanceType"].startswith(("g", "p"))  # an AWS GPU family
    assert "gpu" in cluster["docker"]["worker_image"]  # the CUDA image


def test_cluster_yaml_keeps_the_control_plane_private_and_authenticated(cluster) -> None:
    head_start = " ".join(cluster["head_start_ray_commands"])
    worker_start = " ".join(cluster["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in head_start
    assert "RAY_AUTH_MODE=token ray start --head" in head_start
    assert "RAY_AUTH_MODE=token ray start --address" in worker_start
    assert "~/.ray/auth_token" in cluster["file_mounts"]
    assert "mlflow server --host 127.0.0.1" in head_start
    # the head advertises no CPUs, as `ray start --num-cpus=0` makes it: cells go to workers
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert "--num-cpus=0" in head_start and head["resources"]["CPU"] == 0


def test_cluster_yaml_installs_attack_sweep_with_the_pinned_versions(cluster) -> None:
    setup = " ".join(cluster["setup_commands"])
    assert "pip install" in setup and "constraints.txt" in setup
    assert cluster["file_mounts"]["~/attack-sweep"] == "."
    assert (REPO / "constraints.txt").exists()


def test_cluster_yaml_mounts_shared_storage_into_the_containers(cluster) -> None:
    init = " ".join(cluster["initialization_commands"])
    assert "mount -t nfs4" in init and "/mnt/sweeps" in init
    assert "-v /mnt/sweeps:/mnt/sweeps" in cluster["docker"]["run_options"]


def _drop_head_type(cfg):
    cfg["available_node_types"].pop(cfg["head_node_type"])


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda c: c.update(max_wokers=4), id="misspelt-top-level-key"),
        pytest.param(lambda c: gpu_types(c)["gpu_worker"]["resources"].update(GPU=0.5), id="fractional-gpu"),
        pytest.param(lambda c: gpu_types(c)["gpu_worker"].pop("node_config"), id="worker-without-node-config"),
        pytest.param(lambda c: c["docker"].update(gpus=True), id="unknown-docker-key"),
        pytest.param(_drop_head_type, id="head-type-not-defined"),
        pytest.param(lambda c: c.update(idle_timeout_minutes="ten"), id="timeout-not-a-number"),
    ],
)
def test_broken_cluster_yaml_is_rejected(cluster, breakage) -> None:
    broken = copy.deepcopy(cluster)
    breakage(broken)
    with pytest.raises(Exception) as err:  # jsonschema.ValidationError or ValueError
        validate(broken)
    assert type(err.value).__name__ in ("ValidationError", "ValueError")


@pytest.fixture(scope="module")
def kuberay() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(KUBERAY_YAML.read_text()) if doc]


def ray_cluster(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (rc,) = [d for d in docs if d["kind"] == "RayCluster"]
    return rc


def test_kuberay_manifest_has_a_gpu_worker_group(kuberay) -> None:
    rc = ray_cluster(kuberay)
    assert rc["apiVersion"] == "ray.io/v1"
    groups = rc["spec"]["workerGroupSpecs"]
    gpu_groups = []
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        if int(limits.get("nvidia.com/gpu", 0)) >= 1:
            assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"]  # extended resources: equal
            gpu_groups.append(group)
    assert len(gpu_groups) == 1
    group = gpu_groups[0]
    assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1  # from zero GPU pods
    assert rc["spec"]["enableInTreeAutoscaling"] is True  # the autoscaler that scales the group


def test_kuberay_manifest_is_private_authenticated_and_shares_results(kuberay) -> None:
    rc = ray_cluster(kuberay)
    spec = rc["spec"]
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    (pvc,) = [d for d in kuberay if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    templates = [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
    for template in templates:
        claims = {v["persistentVolumeClaim"]["claimName"] for v in template["spec"]["volumes"]
                  if "persistentVolumeClaim" in v}  # fmt: skip
        assert claims == {pvc["metadata"]["name"]}
        mounts = {m["mountPath"] for m in template["spec"]["containers"][0]["volumeMounts"]}
        assert "/mnt/sweeps" in mounts  # the same path on every pod, as in cluster.yaml
    mlflow = next(c for c in spec["headGroupSpec"]["template"]["spec"]["containers"] if c["name"] == "mlflow")
    assert mlflow["command"][mlflow["command"].index("--host") + 1] == "127.0.0.1"
