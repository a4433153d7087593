"""Load and validate ``registry.toml``: per-model prompts, pixel rules, sampling and serving flags.

The registry is data, not code, so adding a model or changing a flag needs no
Python; validation at load (pydantic, unknown keys forbidden) turns a typo into
a :class:`~ocrq.errors.ConfigurationError` naming the field, not a silent default.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ocrq.errors import ConfigurationError
from ocrq.schemas import PromptMode

REGISTRY_PATH = Path(str(files("ocrq.worker.models") / "registry.toml"))
"""Package data: installed next to this module by the wheel (pyproject's package-data)."""
_SPECIFIER = re.compile(
    r"^(\s*(==|!=|<=|>=|<|>|~=|===)\s*[0-9][0-9A-Za-z.+*-]*\s*)(,\s*(==|!=|<=|>=|<|>|~=)\s*[0-9][0-9A-Za-z.+*-]*\s*)*$"
)
"""PEP 440 specifier sets, checked loosely: the project venv must not need ``packaging``."""

Backend = Literal["vllm", "transformers"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VllmServe(_Strict):
    """How to start vLLM for this model (used by ``ocrq vllm up`` and compose)."""

    port: int = Field(ge=1, le=65535)
    image: str
    max_model_len: int = Field(ge=256)
    gpu_memory_utilization: float = Field(gt=0, le=1)
    enforce_eager: bool = False
    trust_remote_code: bool = False
    startup_timeout_s: int = Field(ge=10)
    extra_args: list[str] = Field(default_factory=list)

    def flags(self) -> list[str]:
        args = ["--port", str(self.port), "--max-model-len", str(self.max_model_len)]
        args += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        args += ["--enforce-eager"] if self.enforce_eager else []
        args += ["--trust-remote-code"] if self.trust_remote_code else []
        return args + self.extra_args


class TransformersLoad(_Strict):
    """How the in-process Transformers engine loads this model."""

    auto_class: str
    trust_remote_code: bool = False
    """Allow the Python code shipped in the snapshot to run (remote-code architectures need it)."""
    revision: str | None = None
    quantization: Literal["none", "8bit", "4bit"] = "none"
    """bitsandbytes quantisation on CUDA; ``OCRQ_HF_QUANTIZATION`` overrides it per host."""
    tested: Literal["real-weights", "tiny-random", "no-weights"] = "no-weights"
    """How far the recipe was run: on the real weights, end to end on a tiny random-weight model of
    the architecture, or only its prompt building and output parsing (never run)."""


class ModelSpec(_Strict):
    """Everything ocrq needs to prompt one model and read its answer."""

    key: str
    hf_repo: str
    architecture: str
    backends: list[Backend] = Field(min_length=1)
    output_format: Literal["dots_layout", "deepseek_grounding", "text"]
    prompts: dict[PromptMode, str]
    image_placeholder: str = ""
    resize: Literal["smart", "fit"]
    image_factor: int = Field(28, ge=1)
    min_pixels: int = Field(ge=1)
    max_pixels: int = Field(ge=1)
    max_tokens: int = Field(ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    image_format: Literal["png", "jpeg"]
    mm_processor_kwargs: dict[str, Any] = Field(default_factory=dict)
    request_extra: dict[str, Any] = Field(default_factory=dict)
    served_model_name: str | None = None
    requires: dict[str, str] = Field(default_factory=dict)
    constraints: list[str] = Field(default_factory=list)
    notes: str = ""
    vllm: VllmServe | None = None
    transformers: TransformersLoad | None = None

    @property
    def served_name(self) -> str:
        """The name requests carry; the repo id is what a plain ``vllm serve <repo>`` answers to."""
        return self.served_model_name or self.hf_repo

    def processor_kwargs(self) -> dict[str, Any]:
        """Server-side processor settings; for "smart" models the same pixel budget we resize to, so
        the server's own resize of our already-resized image is a no-op and boxes stay in our frame.
        (vLLM refuses per-request processor kwargs unless started with --trust-request-mm-kwargs.)"""
        limits = (
            {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels} if self.resize == "smart" else {}
        )
        return limits | self.mm_processor_kwargs

    def vllm_args(self) -> list[str]:
        """The ``vllm serve`` arguments, so containers, compose and docs agree with the registry."""
        if self.vllm is None:
            raise ConfigurationError(f"model {self.key} is not served by vLLM (backends: {self.backends})")
        args = [self.hf_repo, "--served-model-name", self.served_name, *self.vllm.flags()]
        kwargs = self.processor_kwargs()
        return args + (["--mm-processor-kwargs", json.dumps(kwargs)] if kwargs else [])

    def prompt_for(self, mode: PromptMode) -> str | None:
        """The model's own prompt for a mode, or None when it has none (the engine then falls back)."""
        return self.prompts.get(mode)

    @field_validator("requires")
    @classmethod
    def _specifiers(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {name: spec for name, spec in value.items() if not _SPECIFIER.match(spec)}
        if bad:
            raise ValueError(f"not version specifiers: {bad}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels exceeds max_pixels")
        if PromptMode.TEXT_ONLY not in self.prompts:
            raise ValueError("every model needs a text_only prompt (the fallback for other modes)")
        if ("vllm" in self.backends) != (self.vllm is not None):
            raise ValueError("a [vllm] table is required exactly when 'vllm' is among the backends")
        if ("transformers" in self.backends) != (self.transformers is not None):
            raise ValueError("a [transformers] table is required exactly when 'transformers' is a backend")
        return self


class Registry(_Strict):
    models: dict[str, ModelSpec]

    def get(self, key: str) -> ModelSpec:
        """A model by registry key, or a configuration error that lists the keys that exist."""
        try:
            return self.models[key]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ConfigurationError(f"model {key!r} is not in the model registry; known: {known}") from None

    def for_backend(self, backend: Backend) -> list[ModelSpec]:
        return [spec for spec in self.models.values() if backend in spec.backends]


def parse_registry(document: dict[str, Any], source: str = "registry") -> Registry:
    """Validate a registry document; the table key becomes each model's ``key``."""
    models = document.get("models", {})
    try:
        tables = {key: {"key": key, **table} for key, table in models.items()}
        return Registry.model_validate({"models": tables})
    except (ValidationError, TypeError) as error:
        raise ConfigurationError(f"invalid model registry {source}: {error}") from error


def load_registry(path: Path = REGISTRY_PATH) -> Registry:
    """Read and validate a registry file (the bundled one unless told otherwise)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"cannot read model registry {path}: {error}") from error
    return parse_registry(document, str(path))


@cache
def bundled_registry() -> Registry:
    """The registry shipped with ocrq, parsed once per process."""
    return load_registry()
