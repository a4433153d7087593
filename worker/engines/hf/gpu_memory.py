"""Will the model fit? Free GPU memory through NVML, read before loading, never after the fact.

vLLM reserves its share of the GPU at start-up and keeps it, so on a single-GPU box the Transformers
fallback often finds the card full. Loading anyway ends in a CUDA out-of-memory halfway through the
weights; refusing up front with :class:`GpuMemoryShort` (retryable, an ``EngineUnavailable``) lets the
chain move on to the next engine. When configured (the seeds' "mode switch"), the guard first stops
the vLLM container and waits for its memory to come back.

NVML (``nvidia-ml-py``) is read instead of ``torch.cuda.mem_get_info`` because it needs no CUDA
context, and it sees memory held by other processes. Both the reading and the container stop are
plain callables, so tests and other hosts can inject their own.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ocrq.errors import GpuMemoryShort, OcrqError

log = logging.getLogger(__name__)

GiB = 1024**3
HEADROOM_BYTES = GiB
"""Activations, the CUDA context and the allocator's slack on top of the weights."""
HEADROOM_FACTOR = 1.2
VLLM_CONTAINER_PREFIX = "ocrq-vllm-"
"""``vllm.containers.container_name`` gives every ``ocrq vllm up`` container this prefix."""
VLLM_IMAGE_HINT = "vllm/vllm-openai"
"""Hand-started or compose containers count as vLLM by their image."""

FreeMemoryReader = Callable[[int], int | None]
"""CUDA device index (-1: the CPU) → free bytes there, or None when unknown (no NVML, no GPU)."""
VllmStopper = Callable[[], list[str]]
"""Stops the vLLM container(s); returns what it stopped."""


def nvml_index(cuda_index: int, visible: str | None = None) -> int:
    """NVML counts physical GPUs; CUDA counts the ones ``CUDA_VISIBLE_DEVICES`` leaves, in its order."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    ids = [part.strip() for part in (visible or "").split(",") if part.strip()]
    if cuda_index < len(ids) and ids[cuda_index].isdigit():
        return int(ids[cuda_index])
    return cuda_index


def nvml_free_bytes(cuda_index: int) -> int | None:
    """Free bytes through NVML; None when NVML or a driver is absent (then the guard cannot judge)."""
    if cuda_index < 0:
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index(cuda_index))
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).free)
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as error:
        log.info("NVML cannot read GPU memory: %s", error)
        return None


def stop_vllm_containers(client: Any | None = None) -> list[str]:
    """Stop the running vLLM containers (``ocrq vllm up``'s, or any vLLM image) with the same thin
    docker calls ``ocrq vllm down`` uses; returns the names stopped."""
    from ocrq.worker.engines.vllm import containers

    client = client or containers.docker_client()
    names = [container.name for container in client.containers.list() if _is_vllm(container)]
    return [name for name in names if containers.stop(client, name)]


def _is_vllm(container: Any) -> bool:
    tags = " ".join(container.image.tags) if container.image else ""
    return container.name.startswith(VLLM_CONTAINER_PREFIX) or VLLM_IMAGE_HINT in tags


def estimate_load_bytes(weight_bytes: int, stored_bytes_per_param: int, loaded_bytes_per_param: float) -> int:
    """Weights as they will sit on the device, plus headroom for activations and the context."""
    params = weight_bytes / max(stored_bytes_per_param, 1)
    return int(params * loaded_bytes_per_param * HEADROOM_FACTOR) + HEADROOM_BYTES


@dataclass(slots=True)
class MemoryGuard:
    """Checks free memory before a load; optionally stops vLLM to make room."""

    read_free: FreeMemoryReader = nvml_free_bytes
    stop_vllm: VllmStopper | None = None
    settle_seconds: float = 30.0
    """How long to wait for a stopped vLLM's memory to come back."""
    poll_seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def ensure_room(self, need_bytes: int, cuda_index: int, what: str) -> None:
        """Return when ``need_bytes`` fit (or nothing is known); else raise :class:`GpuMemoryShort`."""
        free = self.read_free(cuda_index)
        if free is None or free >= need_bytes:
            return
        if self.stop_vllm is not None:
            free = self._make_room(need_bytes, cuda_index)
            if free is None or free >= need_bytes:
                return
        where = f"GPU {cuda_index}" if cuda_index >= 0 else "the CPU"
        raise GpuMemoryShort(
            f"{what} needs about {need_bytes / GiB:.1f} GiB on {where} but only "
            f"{free / GiB:.1f} GiB is free (vLLM holds the card?); " + self._advice()
        )

    def _advice(self) -> str:
        if self.stop_vllm is not None:
            return "stopping vLLM did not free enough"
        return "OCRQ_TRANSFORMERS_STOP_VLLM=true lets ocrq stop the vLLM container first"

    def _make_room(self, need_bytes: int, cuda_index: int) -> int | None:
        try:
            stopped = self.stop_vllm() if self.stop_vllm else []
        except OcrqError as error:  # no Docker here: refuse as if stopping were off, saying why
            log.warning("could not stop vLLM: %s", error.message)
            stopped = []
        log.warning("stopped %s to free GPU memory for the Transformers engine", stopped or "no container")
        deadline = time.monotonic() + self.settle_seconds
        free = self.read_free(cuda_index)
        while stopped and (free is not None and free < need_bytes) and time.monotonic() < deadline:
            self.sleep(self.poll_seconds)
            free = self.read_free(cuda_index)
        return free
