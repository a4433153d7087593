"""What ``ocrq worker --role`` starts, as plain ``celery worker`` arguments.

- ``gpu``: page OCR. One process per GPU (``CUDA_VISIBLE_DEVICES`` picks it),
  a thread pool sized to the engine's in-flight cap: pages wait on the engine,
  not on our CPU, and CUDA never meets fork.
- ``cpu``: ingest (identify, hash, count pages): prefork, one per core.
- ``all``: both queues in one threaded worker, for a single box.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ocrq.settings import Settings


def page_concurrency(settings: Settings) -> int:
    """The first engine's in-flight cap (what keeps it busy), unless OCRQ_PAGE_WORKERS says otherwise."""
    if settings.page_workers:
        return settings.page_workers
    from ocrq.worker.engines.selection import build_chain

    chain = build_chain(settings)
    try:
        return chain.max_in_flight
    finally:
        chain.close()


def worker_argv(settings: Settings, role: str, concurrency: int | None, loglevel: str) -> list[str]:
    queues, pool, default = _role(settings, role)
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    name = f"{role}{gpu.replace(',', '-')}@%h"
    return [
        "worker",
        "--queues",
        queues,
        "--pool",
        pool,
        "--concurrency",
        str(concurrency or default()),
        "--hostname",
        name,
        "--loglevel",
        loglevel,
        "--task-events",
    ]


def _role(settings: Settings, role: str) -> tuple[str, str, Callable[[], int]]:
    if role == "gpu":
        return settings.gpu_queue, "threads", lambda: page_concurrency(settings)
    if role == "cpu":
        return settings.cpu_queue, "prefork", lambda: os.cpu_count() or 1
    return f"{settings.gpu_queue},{settings.cpu_queue}", "threads", lambda: page_concurrency(settings) + 1
