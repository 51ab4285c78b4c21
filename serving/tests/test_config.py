"""The deployment config: the shipped YAML files, and bad ones refused with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lighthouse_serving.app import llm_config_kwargs
from lighthouse_serving.config import ConfigError, ServingConfig
from lighthouse_serving.tiny_model import write_tiny_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _minimal(model_dir: Path) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "tiny",
                "model_dir": str(model_dir),
                "accelerator": {"kind": "cpu"},
                "max_model_len": 512,
            }
        ]
    }


def _write(tmp_path: Path, data: object, name: str = "serving.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_the_cpu_config_describes_the_tiny_model(tmp_path: Path) -> None:
    config = ServingConfig.load(CONFIGS / "cpu-tiny.yaml", check_paths=False)
    (model,) = config.models
    assert model.tiny_model and model.load_format == "dummy"
    assert model.accelerator.kind == "cpu"
    assert model.structured_outputs.backend == "xgrammar"
    assert model.structured_outputs.disable_any_whitespace
    assert model.model_dir.is_absolute()
    assert model.model_dir.parts[-2:] == ("models", "tiny-vlm")
    assert config.ray.num_cpus > 2  # more logical CPUs than the machine's cores
    assert config.ray.object_store_memory == 512 * 1024**2
    assert config.http.base_url == "http://127.0.0.1:8100"


def test_the_two_version_config_serves_two_variants_alike() -> None:
    config = ServingConfig.load(CONFIGS / "cpu-tiny-two.yaml", check_paths=False)
    first, second = config.models
    assert (first.name, second.name) == ("lighthouse-tiny-vlm", "lighthouse-tiny-vlm-b")
    assert (first.tiny_variant, second.tiny_variant) == (0, 1)
    assert first.model_dir != second.model_dir
    # Apart from what names them, the second is the first (a YAML merge key).
    apart = {"name", "model_dir", "tiny_variant"}
    assert first.model_dump(exclude=apart) == second.model_dump(exclude=apart)


def test_the_gpu_config_names_a_local_directory_and_a_gpu() -> None:
    config = ServingConfig.load(CONFIGS / "gpu.yaml", check_paths=False)
    (model,) = config.models
    assert model.accelerator.kind == "gpu" and model.accelerator.type == "A10G"
    assert model.model_dir == Path("/srv/models/qwen2.5-vl-7b-instruct")
    assert model.dtype == "bfloat16"


def test_the_gpu_config_is_refused_where_its_weights_are_absent() -> None:
    with pytest.raises(ConfigError) as refused:
        ServingConfig.load(CONFIGS / "gpu.yaml")
    assert "models[0].model_dir" in str(refused.value)
    assert "not an existing local directory" in str(refused.value)


def test_a_minimal_config_takes_the_defaults(tmp_path: Path, model_dir: Path) -> None:
    config = ServingConfig.load(_write(tmp_path, _minimal(model_dir)))
    (model,) = config.models
    assert model.autoscaling.min_replicas == 1
    assert model.limit_mm_per_prompt == {"image": 1}
    assert model.engine_kwargs()["structured_outputs_config"] == {
        "backend": "xgrammar",
        "disable_any_whitespace": True,
    }


def test_relative_model_dirs_resolve_against_the_file(tmp_path: Path, model_dir: Path) -> None:
    data = _minimal(Path("model"))
    path = _write(model_dir.parent, data)
    config = ServingConfig.load(path)
    assert config.models[0].model_dir == model_dir


def test_a_hub_id_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _minimal(Path("Qwen/Qwen2.5-VL-7B-Instruct")))
    with pytest.raises(ConfigError) as refused:
        ServingConfig.load(path)
    message = str(refused.value)
    assert "models[0].model_dir" in message
    assert "hub id" in message


def test_a_directory_without_config_json_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"models\[0\]\.model_dir: .* has no config.json"):
        ServingConfig.load(_write(tmp_path, _minimal(empty)))


def test_dry_run_skips_the_path_check(tmp_path: Path) -> None:
    path = _write(tmp_path, _minimal(Path("/nowhere/model")))
    assert ServingConfig.load(path, check_paths=False).models[0].model_dir == Path("/nowhere/model")


BAD = [
    ({"max_model_len": 4}, "models[0].max_model_len", "greater than or equal to 16"),
    ({"max_model_len": "long"}, "models[0].max_model_len", "valid integer"),
    ({"accelerator": {"kind": "tpu"}}, "models[0].accelerator.kind", "'cpu' or 'gpu'"),
    ({"accelerator": {"kind": "gpu", "type": "GTX"}}, "models[0].accelerator", "unknown GPU"),
    ({"accelerator": {"kind": "cpu", "type": "L4"}}, "models[0].accelerator", "no type"),
    ({"tensor_parallel_size": 2}, "models[0]", "tensor_parallel_size must be 1 on cpu"),
    ({"dtype": "float64"}, "models[0].dtype", "'auto'"),
    ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "models[0].autoscaling", "below"),
    ({"autoscaling": {"target_ongoing_requests": 0}}, "models[0].autoscaling.target", "greater"),
    ({"structured_outputs": {"backend": "auto"}}, "models[0].structured_outputs.backend", ""),
    ({"engine_extras": {"dtype": "half"}}, "models[0].engine_extras", "field of its own"),
    ({"limit_mm_per_prompt": {"smell": 1}}, "models[0].limit_mm_per_prompt", "modalities"),
    ({"name": "a b"}, "models[0].name", "served model name"),
    ({"tiny_model": True}, "models[0]", "load_format: dummy"),
    ({"tiny_variant": 1}, "models[0]", "tiny_variant is for the tiny model"),
    (
        {"tiny_model": True, "load_format": "dummy", "tiny_variant": 8},
        "models[0].tiny_variant",
        "7",
    ),
    ({"max_num_seq": 8}, "models[0].max_num_seq", "unknown field"),
]


@pytest.mark.parametrize(("change", "field", "words"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_a_bad_model_setting_is_refused_by_name(
    tmp_path: Path, model_dir: Path, change: dict[str, Any], field: str, words: str
) -> None:
    data = _minimal(model_dir)
    data["models"][0].update(change)
    with pytest.raises(ConfigError) as refused:
        ServingConfig.load(_write(tmp_path, data))
    message = str(refused.value)
    assert f"  {field}" in message, message
    assert words in message, message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"http": {"port": 70000}}, "http.port"),
        ({"ray": {"object_store_memory": "1MiB"}}, "ray.object_store_memory"),
        ({"ray": {"memory": "lots"}}, "ray.memory"),
        ({"ray": {"num_cpu": 4}}, "ray.num_cpu"),
        ({"models": []}, "models"),
        ({"app_name": "Has Spaces"}, "app_name"),
    ],
)
def test_a_bad_top_level_setting_is_refused_by_name(
    tmp_path: Path, model_dir: Path, change: dict[str, Any], field: str
) -> None:
    data = _minimal(model_dir) | change
    with pytest.raises(ConfigError) as refused:
        ServingConfig.load(_write(tmp_path, data))
    assert f"  {field}:" in str(refused.value)


def test_duplicate_model_names_are_refused(tmp_path: Path, model_dir: Path) -> None:
    data = _minimal(model_dir)
    data["models"].append(dict(data["models"][0]))
    with pytest.raises(ConfigError, match="unique"):
        ServingConfig.load(_write(tmp_path, data))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = {"models": [{"name": "x", "model_dir": "/nowhere", "accelerator": {"kind": "cpu"}}]}
    with pytest.raises(ConfigError) as refused:
        ServingConfig.load(_write(tmp_path, data))
    message = str(refused.value)
    assert "models[0].model_dir" in message and "models[0].max_model_len: required" in message


@pytest.mark.parametrize(
    ("text", "words"),
    [("models: [", "not valid YAML"), ("- a list", "expected a mapping")],
)
def test_files_that_are_not_configs(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=words):
        ServingConfig.load(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read it"):
        ServingConfig.load(tmp_path / "missing.yaml")


def test_cpu_llm_config_arguments(model_dir: Path) -> None:
    config = ServingConfig.load(CONFIGS / "cpu-tiny.yaml", check_paths=False)
    kwargs = llm_config_kwargs(config.models[0])
    assert kwargs["accelerator_config"] == {"kind": "cpu"}
    assert kwargs["placement_group_config"] == {"bundles": [{"CPU": 1}]}
    env = kwargs["runtime_env"]["env_vars"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    engine = kwargs["engine_kwargs"]
    assert engine["load_format"] == "dummy" and engine["dtype"] == "float32"
    assert engine["gpu_memory_utilization"] == 0.1 and engine["enforce_eager"] is True
    assert kwargs["model_loading_config"] == {
        "model_id": "lighthouse-tiny-vlm",
        "model_source": str(config.models[0].model_dir),
    }


def test_gpu_llm_config_arguments() -> None:
    config = ServingConfig.load(CONFIGS / "gpu.yaml", check_paths=False)
    kwargs = llm_config_kwargs(config.models[0])
    assert kwargs["accelerator_type"] == "A10G"
    assert "placement_group_config" not in kwargs
    assert "VLLM_CPU_KVCACHE_SPACE" not in kwargs["runtime_env"]["env_vars"]
    assert kwargs["deployment_config"]["autoscaling_config"]["max_replicas"] == 2


def test_ray_serve_llm_accepts_both_configs() -> None:
    """Ray's own LLMConfig validates what we build (engine arguments included)."""
    from ray.serve.llm import LLMConfig

    for name in ("cpu-tiny.yaml", "cpu-tiny-two.yaml", "gpu.yaml"):
        config = ServingConfig.load(CONFIGS / name, check_paths=False)
        for model in config.models:
            llm_config = LLMConfig(**llm_config_kwargs(model))
            assert llm_config.model_id == model.name
            engine = llm_config.get_engine_config()
            assert engine.engine_kwargs["max_model_len"] == model.max_model_len
