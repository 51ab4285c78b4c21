"""The Ray Serve application: one OpenAI-compatible app serving every model of a config.

This is the only module that imports the engine's side (``ray.serve.llm``); the rest of the
package speaks in ``ServingConfig``. The ingress, the ``/v1`` routes, the vLLM engine and its
OpenAI server are Ray's and vLLM's. We compose them as Ray Serve LLM's ``build_openai_app`` does,
with its public parts (``build_llm_deployment``, ``OpenAiIngress``, ``make_fastapi_ingress``),
for one reason: the ingress's FastAPI app gets one middleware of ours in front of Ray's own,
the callers' credential (lighthouse_serving.credential). ``build_openai_app`` makes its app
itself and offers no way in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lighthouse_serving.config import ModelDeployment, ServingConfig
from lighthouse_serving.credential import CallerCredentialMiddleware

if TYPE_CHECKING:
    from ray.serve import Application

# Every engine process runs offline: a model directory is all it may read.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}

# vLLM on CPU: the KV cache's size in GiB (unset, vLLM sizes it from RAM). A config's `env`
# may add more (e.g. VLLM_CPU_OMP_THREADS_BIND); these are the settings verified on 2 cores.
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
}

# On CPU, "GPU memory utilisation" is the fraction of RAM vLLM reserves; its default (0.92)
# refuses to start beside anything else. Eager mode: no graph capture on CPU.
CPU_ENGINE_DEFAULTS: dict[str, Any] = {
    "gpu_memory_utilization": 0.1,
    "enforce_eager": True,
}


def engine_environment(model: ModelDeployment) -> dict[str, str]:
    """Environment variables of a model's replica and engine processes."""
    env = dict(OFFLINE_ENV)
    if model.accelerator.kind == "cpu":
        env.update(CPU_ENV)
    env.update(model.env)
    return env


def llm_config_kwargs(model: ModelDeployment) -> dict[str, Any]:
    """Keyword arguments of ``ray.serve.llm.LLMConfig`` for one model (plain data, testable)."""
    engine_kwargs = model.engine_kwargs()
    kwargs: dict[str, Any] = {
        "model_loading_config": {"model_id": model.name, "model_source": str(model.model_dir)},
        "deployment_config": {
            "autoscaling_config": {
                "min_replicas": model.autoscaling.min_replicas,
                "max_replicas": model.autoscaling.max_replicas,
                "target_ongoing_requests": model.autoscaling.target_ongoing_requests,
            },
        },
        "runtime_env": {"env_vars": engine_environment(model)},
    }
    if model.accelerator.kind == "cpu":
        # One CPU bundle for the engine; Ray Serve LLM runs it with the multiprocessing executor.
        kwargs["accelerator_config"] = {"kind": "cpu"}
        kwargs["placement_group_config"] = {"bundles": [{"CPU": 1}]}
        kwargs["engine_kwargs"] = {**CPU_ENGINE_DEFAULTS, **engine_kwargs}
    else:
        kwargs["accelerator_config"] = {"kind": "gpu"}
        if model.accelerator.type is not None:
            kwargs["accelerator_type"] = model.accelerator.type
        kwargs["engine_kwargs"] = engine_kwargs
    return kwargs


def build_app(config: ServingConfig, secret_file: Path) -> Application:
    """The Ray Serve application for ``config``: Ray Serve LLM's OpenAI ingress over its models,
    answering only callers with a secret from ``secret_file``."""
    from ray import serve

    # Ray's FastAPI app with its own middlewares (errors in OpenAI's shape, request ids, HTTP
    # metrics); `make_fastapi_ingress` takes an app, and Ray's public API has no builder of it.
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.core.ingress.ingress import init as ray_ingress_app
    from ray.serve.llm import LLMConfig, build_llm_deployment
    from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress

    llm_configs = [LLMConfig(**llm_config_kwargs(model)) for model in config.models]
    fastapi_app = ray_ingress_app()
    # Added last, so it runs first: nothing of Ray's sees a request the tier refuses.
    fastapi_app.add_middleware(CallerCredentialMiddleware, secret_file=str(secret_file))
    ingress = make_fastapi_ingress(OpenAiIngress, app=fastapi_app)
    options = OpenAiIngress.get_deployment_options(llm_configs)
    app: Application = serve.deployment(ingress, **options).bind(
        llm_deployments={c.model_id: build_llm_deployment(c) for c in llm_configs},
        model_cards={c.model_id: to_model_metadata(c.model_id, c) for c in llm_configs},
    )
    return app


def check_engine_arguments(config: ServingConfig) -> list[str]:
    """Let Ray Serve LLM build each model's engine config; one problem per line, none if valid.

    Catches what only the engine knows (an unknown vLLM argument in ``engine_extras``) without
    starting anything.
    """
    from ray.serve.llm import LLMConfig

    problems = []
    for index, model in enumerate(config.models):
        try:
            LLMConfig(**llm_config_kwargs(model)).get_engine_config()
        except Exception as error:  # Ray raises ValueError or pydantic's ValidationError
            problems.append(f"models[{index}] ({model.name}): {error}")
    return problems
