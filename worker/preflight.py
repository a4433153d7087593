"""Before a page worker starts: build its engine chain once, as its first page would.

A vLLM URL that answers but serves another model (or is no OpenAI server at all)
must stop the worker with one line naming the setting, not let every page fail
``model_not_served`` and fall back to Tesseract. A server that does not answer
yet is let be: pages wait for it (``OCRQ_FALLBACK_AFTER_SECONDS``).
"""

from __future__ import annotations

from ocrq.settings import Settings
from ocrq.worker.engines.selection import build_chain

PAGE_ROLES = ("gpu", "all")


def preflight_engines(settings: Settings, role: str) -> list[str]:
    """The chain's engine names for a page-OCR role (empty for ``cpu``); raises what building raises."""
    if role not in PAGE_ROLES:
        return []
    chain = build_chain(settings)
    try:
        return [engine.name for engine in chain.engines]
    finally:
        chain.close()
