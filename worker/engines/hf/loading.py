"""Load one registry model with Transformers, offline, on the device it fits; and release it again.

torch and transformers are imported here and only when a load actually happens (the first page a
worker process sees), never at import time: the API, the CPU workers and a prefork parent building
the chain to size its pool must not pay for them, and CUDA must not be initialised before a fork.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrq.errors import ConfigurationError, EngineUnavailable
from ocrq.worker.engines.hf.gpu_memory import MemoryGuard, estimate_load_bytes
from ocrq.worker.engines.hf.recipes import Recipe
from ocrq.worker.models.hf_cache import WEIGHT_SUFFIXES
from ocrq.worker.models.registry import ModelSpec

log = logging.getLogger(__name__)

BYTES_PER_DTYPE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What to load and how, decided without torch (device ``auto`` is settled at load)."""

    spec: ModelSpec
    path: Path
    recipe: Recipe
    device: str = "auto"
    eight_bit: bool = False


@dataclass(slots=True)
class LoadedModel:
    model: Any
    processor: Any
    recipe: Recipe
    device: str
    dtype: str
    attention: str
    load_seconds: float


def heavy_libraries_missing() -> list[str]:
    """Which of the extra's libraries are absent, checked without importing them."""
    return [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]


def resolve_device(requested: str) -> str:
    """``auto`` → the first visible GPU when there is one, else the CPU."""
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailable(f"OCRQ_TRANSFORMERS_DEVICE={requested} but torch sees no CUDA device")
    return "cuda:0" if requested == "cuda" else requested


def choose_dtype(device: str) -> str:
    """bf16 on GPUs that have it (fp16 on older ones), fp32 on the CPU where half precision crawls."""
    import torch

    if not device.startswith("cuda"):
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def choose_attention(device: str) -> str:
    """flash_attention_2 when the package is there and we are on a GPU; sdpa everywhere else."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def memory_index(device: str) -> int:
    """The CUDA index the guard reads; -1 for the CPU (NVML knows nothing there, an injected reader may)."""
    return int(device.partition(":")[2] or 0) if device.startswith("cuda") else -1


def weight_bytes(path: Path) -> int:
    """Bytes of weight files (symlinks into the cache's blobs followed)."""
    files = (p for p in path.rglob("*") if p.name.endswith(WEIGHT_SUFFIXES))
    return sum(p.stat().st_size for p in files if p.exists())


def stored_bytes_per_param(path: Path) -> int:
    """From the config's dtype (``torch_dtype`` in transformers 4, ``dtype`` in 5); bf16 if unsaid."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 2
    text = config.get("text_config") or {}
    name = config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or text.get("dtype")
    return BYTES_PER_DTYPE.get(str(name), 2)


def need_bytes(plan: LoadPlan, dtype: str) -> int:
    loaded = 1 if plan.eight_bit else BYTES_PER_DTYPE[dtype]
    return estimate_load_bytes(weight_bytes(plan.path), stored_bytes_per_param(plan.path), loaded)


def load_model(plan: LoadPlan, guard: MemoryGuard) -> LoadedModel:
    """Check memory, then load processor and model from the local directory; library errors become ours."""
    started = time.perf_counter()
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)  # before transformers is first imported: it reads them once
    device = resolve_device(plan.device)
    dtype = choose_dtype(device)
    guard.ensure_room(need_bytes(plan, dtype), memory_index(device), plan.spec.key)
    attention = choose_attention(device)
    try:
        model, processor = _load(plan, device, dtype, attention)
    except (OSError, ValueError, ImportError, RuntimeError, KeyError, AttributeError, TypeError) as error:
        raise EngineUnavailable(f"cannot load {plan.spec.key} from {plan.path}: {error}") from error
    seconds = time.perf_counter() - started
    log.info("loaded %s on %s (%s, %s) in %.1f s", plan.spec.key, device, dtype, attention, seconds)
    return LoadedModel(model, processor, plan.recipe, device, dtype, attention, seconds)


def _load(plan: LoadPlan, device: str, dtype: str, attention: str) -> tuple[Any, Any]:
    options = plan.spec.transformers
    assert options is not None  # the factory refused models without a [transformers] table
    model = _load_weights(plan, options.auto_class, options.trust_remote_code, device, dtype, attention)
    plan.recipe.before_processor()
    return model, _load_processor(plan, options.trust_remote_code)


def _load_weights(
    plan: LoadPlan, auto_class: str, remote: bool, device: str, dtype: str, attention: str
) -> Any:
    """The registry's class, from the local directory only, with the recipe's config fixes applied."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(
        plan.path, trust_remote_code=remote, local_files_only=True
    )
    plan.recipe.patch_config(config, attention)
    kwargs: dict[str, Any] = {
        "config": config,
        "dtype": getattr(torch, dtype),
        "attn_implementation": attention,
        "trust_remote_code": remote,
        "local_files_only": True,
    }
    model_class = getattr(transformers, auto_class)
    return model_class.from_pretrained(plan.path, **kwargs | _placement(device, plan.eight_bit)).eval()


def _load_processor(plan: LoadPlan, remote: bool) -> Any:
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(
        plan.path, trust_remote_code=remote, local_files_only=True, **plan.recipe.processor_kwargs
    )
    _pad_left(processor)
    return processor


def _placement(device: str, eight_bit: bool) -> dict[str, Any]:
    """Weights straight onto the GPU (accelerate's device_map), optionally 8-bit through bitsandbytes."""
    if not device.startswith("cuda"):
        if eight_bit:
            raise ConfigurationError("8-bit loading (OCRQ_TRANSFORMERS_8BIT) needs a CUDA device")
        return {}
    placement: dict[str, Any] = {"device_map": {"": device}}
    if eight_bit:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise EngineUnavailable("OCRQ_TRANSFORMERS_8BIT needs bitsandbytes (pip install bitsandbytes)")
        from transformers import BitsAndBytesConfig

        placement["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    return placement


def _pad_left(processor: Any) -> None:
    """Batched generation of a decoder-only model needs the padding on the left."""
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.padding_side = "left"


def release(loaded: LoadedModel) -> None:
    """Drop every reference this module holds and give cached GPU blocks back to the driver."""
    on_gpu = loaded.device.startswith("cuda")
    loaded.model = loaded.processor = None
    gc.collect()
    if on_gpu:
        import torch

        torch.cuda.empty_cache()
