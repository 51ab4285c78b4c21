"""A serving deployment described as data: one or more models, their engine settings, the HTTP
address and the Ray resources of a local start, loadable from YAML.

Models are served from local directories only. Lighthouse never downloads weights: a value that
is not an existing directory holding a ``config.json`` (a hub id such as ``Qwen/Qwen2.5-VL-7B``
included) is refused, except when a file is checked without its paths (``check-config --dry-run``,
or a config validated on one machine for another). Relative paths are resolved against the YAML
file's own directory, so a config means the same thing from any working directory.

This module imports neither Ray nor vLLM: the gateway's tooling and CI can validate configs
without the engine installed.
"""

from __future__ import annotations

import os.path
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Engine arguments that have a field of their own here; `engine_extras` may not set them, so a
# config has one place for each setting (the typed one, with its checks).
OWNED_ENGINE_ARGUMENTS = frozenset(
    {
        "model",
        "served_model_name",
        "tensor_parallel_size",
        "max_num_seqs",
        "max_model_len",
        "limit_mm_per_prompt",
        "enable_prefix_caching",
        "dtype",
        "load_format",
        "structured_outputs_config",
    }
)

# Accelerator types Ray knows (ray.util.accelerators); the GPU cluster's nodes advertise one.
GPU_TYPES = frozenset(
    {"T4", "L4", "A10G", "L40S", "A100", "A100-40G", "A100-80G", "H100", "H200", "B200", "V100"}
)

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# The tiny test model comes in a few variants (tiny_model.py).
MAX_TINY_VARIANT = 7


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and every faulty field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Accelerator(_Strict):
    """Where the engine runs: ``cpu`` (tests, the demo) or ``gpu`` with a Ray accelerator type."""

    kind: Literal["cpu", "gpu"]
    type: str | None = Field(
        default=None, description="Ray accelerator type of the GPU nodes, e.g. A10G or L4"
    )

    @model_validator(mode="after")
    def _type_matches_kind(self) -> Self:
        if self.kind == "cpu" and self.type is not None:
            raise ValueError("a cpu accelerator has no type; remove `type`")
        if self.kind == "gpu" and self.type is not None and self.type not in GPU_TYPES:
            raise ValueError(f"unknown GPU type {self.type!r}; one of {sorted(GPU_TYPES)}")
        return self


class Autoscaling(_Strict):
    """Replicas of one model (Ray Serve's autoscaling_config)."""

    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 1
    target_ongoing_requests: Annotated[float, Field(gt=0)] = 16

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class StructuredOutputs(_Strict):
    """The engine's structured-output decoding (vLLM's ``structured_outputs_config``).

    The backend must be named: with vLLM 0.32's default ``auto`` the engine refuses to start
    under Ray Serve LLM. ``disable_any_whitespace`` matters with weak (or random) weights, which
    otherwise fill a JSON answer with whitespace until ``max_tokens``; only the engine-level
    setting counts (the per-request field is ignored in 0.32).
    """

    backend: Literal["xgrammar", "guidance", "outlines", "lm-format-enforcer"] = "xgrammar"
    disable_any_whitespace: bool = True


class ModelDeployment(_Strict):
    """One served model: what it is called, where its files are, and how the engine runs it."""

    name: str = Field(description="the served model name, as clients pass it in `model`")
    model_dir: Path = Field(description="a local directory with config.json (never a hub id)")
    tiny_model: bool = Field(
        default=False,
        description="the directory holds Lighthouse's tiny test VLM; `up` writes it when missing",
    )
    tiny_variant: Annotated[int, Field(ge=0, le=MAX_TINY_VARIANT)] = Field(
        default=0,
        description="which variant of the tiny model (they differ in shape, so in their answers: "
        "two variants stand in for two versions of a model)",
    )
    load_format: Literal["auto", "safetensors", "dummy"] = Field(
        default="auto", description="`dummy` initialises random weights (the tiny model)"
    )
    accelerator: Accelerator
    tensor_parallel_size: Annotated[int, Field(ge=1)] = 1
    autoscaling: Autoscaling = Autoscaling()
    max_num_seqs: Annotated[int, Field(ge=1)] = 32
    max_model_len: Annotated[int, Field(ge=16)]
    limit_mm_per_prompt: dict[str, Annotated[int, Field(ge=0)]] = {"image": 1}
    enable_prefix_caching: bool = True
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    structured_outputs: StructuredOutputs = StructuredOutputs()
    engine_extras: dict[str, Any] = Field(
        default_factory=dict, description="further vLLM engine arguments, passed as they are"
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="environment of the engine's processes"
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_token(cls, value: str) -> str:
        if not MODEL_NAME.match(value):
            raise ValueError(
                "a served model name is 1-128 letters, digits and . _ : - (no spaces or slashes)"
            )
        return value

    @field_validator("model_dir")
    @classmethod
    def _local_directory(cls, value: Path, info: ValidationInfo) -> Path:
        context = info.context or {}
        base = context.get("base_dir")
        path = value.expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        # Collapse `..` without resolving symlinks: the path stays the one the user wrote.
        path = Path(os.path.normpath(path))
        if context.get("check_paths", True):
            if not path.is_dir():
                hint = (
                    " (it looks like a hub id: Lighthouse serves local directories only)"
                    if not str(value).startswith((".", "/", "~")) and str(value).count("/") == 1
                    else ""
                )
                raise ValueError(f"{path} is not an existing local directory{hint}")
            if not (path / "config.json").is_file():
                raise ValueError(f"{path} has no config.json: it is not a model directory")
        return path

    @field_validator("limit_mm_per_prompt")
    @classmethod
    def _known_modalities(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - {"image", "video", "audio"}
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; image, video or audio")
        return value

    @field_validator("engine_extras")
    @classmethod
    def _no_owned_arguments(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(OWNED_ENGINE_ARGUMENTS & set(value))
        if owned:
            raise ValueError(
                f"{', '.join(owned)} {'has' if len(owned) == 1 else 'have'} a field of its own "
                "in the model's config; set it there"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.tiny_model and self.load_format != "dummy":
            raise ValueError("the tiny model has no weights: it needs load_format: dummy")
        if self.tiny_variant and not self.tiny_model:
            raise ValueError("tiny_variant is for the tiny model (tiny_model: true)")
        if self.accelerator.kind == "cpu" and self.tensor_parallel_size != 1:
            raise ValueError("tensor_parallel_size must be 1 on cpu")
        return self

    def engine_kwargs(self) -> dict[str, Any]:
        """vLLM engine arguments for this model (Ray Serve LLM sets the model path itself)."""
        kwargs: dict[str, Any] = {
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_num_seqs": self.max_num_seqs,
            "max_model_len": self.max_model_len,
            "limit_mm_per_prompt": dict(self.limit_mm_per_prompt),
            "enable_prefix_caching": self.enable_prefix_caching,
            "dtype": self.dtype,
            "load_format": self.load_format,
            "structured_outputs_config": self.structured_outputs.model_dump(),
        }
        kwargs.update(self.engine_extras)
        return kwargs


class HttpAddress(_Strict):
    """Where Ray Serve's HTTP proxy listens (the OpenAI-compatible API)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8100

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host
        return f"http://{host}:{self.port}"


class RayResources(_Strict):
    """What a local Ray head (``up``) may use. Sizes take bytes or units: 512MiB, 8GiB.

    ``num_cpus`` is Ray's count of logical CPUs, not a limit on cores: on CPU it must exceed
    what the engine's placement bundle and the replicas ask for together, or the ingress is never
    scheduled (on 2 cores, 8 works).
    """

    num_cpus: Annotated[int, Field(ge=1)] = 8
    memory: ByteSize = ByteSize(8 * 1024**3)
    object_store_memory: ByteSize = ByteSize(512 * 1024**2)
    private_network: bool = Field(
        default=True,
        description="run Ray in a network namespace of its own, reachable only through the "
        "API's address (lighthouse_serving.isolation); Ray itself listens on every interface",
    )

    @field_validator("object_store_memory")
    @classmethod
    def _object_store_floor(cls, value: ByteSize) -> ByteSize:
        if value < 78 * 1024**2:  # Ray refuses smaller object stores
            raise ValueError("Ray needs an object store of at least 78MiB")
        return value


class Callers(_Strict):
    """Who may call the tier: holders of a secret from ``secret_file`` (lighthouse_serving.
    credential). On a cluster the file is placed on every node by the operator; a local start
    (``up``) without one makes ``RUN_DIR/caller-secret``."""

    secret_file: Path | None = Field(
        default=None, description="the callers' bearer secrets, one per line (mode 0600)"
    )

    @field_validator("secret_file")
    @classmethod
    def _relative_to_the_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        path = value.expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return Path(os.path.normpath(path))


class ServingConfig(_Strict):
    """A serving deployment: the models, where the API listens, and a local start's resources."""

    http: HttpAddress = HttpAddress()
    callers: Callers = Callers()
    ray: RayResources = RayResources()
    app_name: str = Field(default="lighthouse", pattern=r"^[a-z][a-z0-9-]{0,62}$")
    models: Annotated[list[ModelDeployment], Field(min_length=1)]

    @field_validator("models")
    @classmethod
    def _unique_names(cls, value: list[ModelDeployment]) -> list[ModelDeployment]:
        names = [model.name for model in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"served model names must be unique; repeated: {duplicates}")
        return value

    @property
    def accelerator_kind(self) -> Literal["cpu", "gpu"]:
        return "gpu" if any(m.accelerator.kind == "gpu" for m in self.models) else "cpu"

    @classmethod
    def from_mapping(
        cls, data: object, *, base_dir: Path | None = None, check_paths: bool = True
    ) -> ServingConfig:
        """Validate already-parsed data; relative model paths resolve against ``base_dir``."""
        return cls.model_validate(data, context={"base_dir": base_dir, "check_paths": check_paths})

    @classmethod
    def load(cls, path: Path | str, *, check_paths: bool = True) -> ServingConfig:
        """Read and validate a YAML file; every problem is reported in one ``ConfigError``."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"{path}: cannot read it: {error.strerror or error}") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}: expected a mapping with `models`, got {type(data).__name__}"
            )
        try:
            return cls.from_mapping(data, base_dir=path.resolve().parent, check_paths=check_paths)
        except ValidationError as error:
            raise ConfigError(describe(error, path)) from error


def describe(error: ValidationError, source: Path | str) -> str:
    """One line per problem, each naming its field: ``models[0].max_model_len: ...``."""
    lines = [f"{source}: {error.error_count()} problem(s)"]
    for item in error.errors(include_url=False):
        lines.append(f"  {field_path(item['loc'])}: {_message(item)}")
    return "\n".join(lines)


def field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(item: Any) -> str:
    message = str(item["msg"])
    if item["type"] == "extra_forbidden":
        return "unknown field (a typo?)"
    if item["type"] == "missing":
        return "required"
    return message.removeprefix("Value error, ")
