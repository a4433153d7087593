"""The engine seam: a page image and a task in, a :class:`PageResult` out.

Every OCR backend (``vllm/``, the in-process Transformers engine in ``hf/``, ``tesseract.py``; built
into a chain by ``selection.py``) implements :class:`Engine`. Engines raise only :mod:`ocrq.errors`
types, translating their library's exceptions at this boundary, so the chain can decide what to retry.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from PIL import Image

from ocrq.schemas import PageResult, PageTask


@runtime_checkable
class Engine(Protocol):
    name: str
    """Stable engine name as used in ``OCRQ_ENGINES`` and stored on pages and attempts."""
    model: str
    """What model (or language set) produced the result, for the record."""
    image_mode: str
    """Pillow mode the engine wants pages rendered in ("L" or "RGB")."""
    max_in_flight: int
    """How many pages the engine can usefully take at once (sizes the page worker pool)."""

    def recognize(self, image: Image.Image, task: PageTask) -> PageResult:
        """OCR one page; thread-safe. Raises :class:`ocrq.errors.OcrqError` subclasses only."""
        ...

    def close(self) -> None:
        """Release handles, models or connections."""
        ...
