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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrq.errors import EngineUnavailable
from ocrq.worker.engines.hf.gpu_memory import MemoryGuard, estimate_load_bytes
from ocrq.worker.engines.hf.quantization import (
    Fallback,
    Quantization,
    bitsandbytes_config,
    bitsandbytes_installed,
    decide,
    loaded_bytes_per_param,
)
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
    quantization: int = 0
    """Bits asked for (0: full precision); what is possible is decided at load."""
    fallback: Fallback = "full"


@dataclass(slots=True)
class LoadedModel:
    model: Any
    processor: Any
    recipe: Recipe
    device: str
    dtype: str
    attention: str
    load_seconds: float
    quantization: Quantization = field(default_factory=lambda: Quantization(0))


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


def choose_attention(device: str, fallback: str = "sdpa") -> str:
    """flash_attention_2 when the package is there and we are on a GPU; the recipe's choice elsewhere."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return fallback


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


def need_bytes(plan: LoadPlan, dtype: str, bits: int = 0) -> int:
    """What the guard checks: the weights as they will sit on the device (quantised or not)."""
    loaded = loaded_bytes_per_param(bits, BYTES_PER_DTYPE[dtype])
    return estimate_load_bytes(weight_bytes(plan.path), stored_bytes_per_param(plan.path), loaded)


def load_model(plan: LoadPlan, guard: MemoryGuard) -> LoadedModel:
    """Decide device, precision and quantisation, check memory, then load from the local directory;
    library errors become ours."""
    started = time.perf_counter()
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)  # before transformers is first imported: it reads them once
    device = resolve_device(plan.device)
    on_gpu = device.startswith("cuda")
    if plan.recipe.needs_cuda and not on_gpu:
        raise EngineUnavailable(f"{plan.spec.key}'s own code moves its tensors to CUDA: it needs a GPU")
    quantization = decide(plan.quantization, on_gpu, bitsandbytes_installed(), plan.fallback, plan.spec.key)
    if quantization.note:
        log.warning(quantization.note)
    dtype = choose_dtype(device)
    guard.ensure_room(need_bytes(plan, dtype, quantization.bits), memory_index(device), plan.spec.key)
    attention = choose_attention(device, plan.recipe.attention)
    try:
        model, processor = _load(plan, device, dtype, attention, quantization.bits)
    except (OSError, ValueError, ImportError, RuntimeError, KeyError, AttributeError, TypeError) as error:
        raise EngineUnavailable(f"cannot load {plan.spec.key} from {plan.path}: {error}") from error
    seconds = time.perf_counter() - started
    log.info("loaded %s on %s (%s, %s) in %.1f s", plan.spec.key, device, dtype, attention, seconds)
    return LoadedModel(model, processor, plan.recipe, device, dtype, attention, seconds, quantization)


def _load(plan: LoadPlan, device: str, dtype: str, attention: str, bits: int) -> tuple[Any, Any]:
    options = plan.spec.transformers
    assert options is not None  # the factory refused models without a [transformers] table
    model = _load_weights(plan, options.auto_class, options.trust_remote_code, device, dtype, attention, bits)
    plan.recipe.before_processor()
    return model, _load_companion(plan, options.trust_remote_code)


def _load_weights(
    plan: LoadPlan, auto_class: str, remote: bool, device: str, dtype: str, attention: str, bits: int
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
        dtype_keyword(transformers.__version__): getattr(torch, dtype),
        "attn_implementation": attention,
        "trust_remote_code": remote,
        "local_files_only": True,
    }
    model_class = getattr(transformers, auto_class)
    return model_class.from_pretrained(plan.path, **kwargs | _placement(device, bits, dtype)).eval()


def dtype_keyword(version: str) -> str:
    """``dtype`` since transformers 4.56; the pinned older versions remote code needs say ``torch_dtype``."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _load_companion(plan: LoadPlan, remote: bool) -> Any:
    """The processor, tokenizer or nothing the recipe needs beside the weights."""
    import transformers

    companion = plan.recipe.companion
    if companion == "none":
        return None
    loader = transformers.AutoProcessor if companion == "processor" else transformers.AutoTokenizer
    limits = plan.spec.processor_kwargs() if companion == "processor" else {}
    processor = loader.from_pretrained(
        plan.path, trust_remote_code=remote, local_files_only=True, **limits | plan.recipe.processor_kwargs
    )
    _pad_left(processor)
    return processor


def _placement(device: str, bits: int, dtype: str) -> dict[str, Any]:
    """Weights straight onto the GPU (accelerate's device_map), quantised when decided so."""
    if not device.startswith("cuda"):
        return {}
    placement: dict[str, Any] = {"device_map": {"": device}}
    if bits:
        placement["quantization_config"] = bitsandbytes_config(bits, dtype)
    return placement


def _pad_left(processor: Any) -> None:
    """Batched generation of a decoder-only model needs the padding on the left."""
    tokenizer = getattr(processor, "tokenizer", processor)
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
