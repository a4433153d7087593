"""When a pipeline prepares its pages in the process pool, and what it prepares for its first engine."""

from __future__ import annotations

import logging

from ocrq.errors import OcrqError
from ocrq.schemas import PageTask
from ocrq.settings import Settings
from ocrq.worker.documents.render import RenderLimits
from ocrq.worker.engines.chain import EngineChain
from ocrq.worker.prepare.pool import PagePreparer, shared_pool

log = logging.getLogger(__name__)

__all__ = ["PagePreparer", "preparer_for", "start_early"]


def preparer_for(
    settings: Settings, chain: EngineChain, limits: RenderLimits, task: PageTask
) -> PagePreparer | None:
    """A preparer when the first engine is vLLM and OCRQ_PREPARE_PROCESSES is not 0.

    Only a server engine gains: its page threads wait on the network, so the CPU work can move out
    of their process; an in-process engine (Tesseract, Transformers) is CPU- or GPU-bound anyway.
    """
    from ocrq.worker.engines.vllm.engine import VllmEngine
    from ocrq.worker.engines.vllm.request import choose_prompt

    first = chain.engines[0]
    if settings.prepare_processes == 0 or not isinstance(first, VllmEngine):
        return None
    try:
        crop = choose_prompt(first.spec, task).crop
    except OcrqError:
        crop = None
    pool = shared_pool(settings.prepare_processes, settings.prepare_dir)
    spec, budget = (first.spec, first.spec.max_pixels) if crop is None else (None, None)
    scope = f"{settings.database_url}|{settings.result_key()}"
    return PagePreparer(pool, scope, limits, first.image_mode, spec, budget)


def start_early(settings: Settings, queues: set[str]) -> bool:
    """Start the pool as the worker starts when its pages will want it (vLLM first, the page queue)."""
    wanted = (
        settings.prepare_processes != 0
        and settings.gpu_queue in queues
        and bool(settings.engines)
        and settings.engines[0] == "vllm"
        and not settings.chain_factory
    )
    if wanted:
        shared_pool(settings.prepare_processes, settings.prepare_dir).start()
    return wanted
