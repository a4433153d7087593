"""Build the engine chain from ``OCRQ_ENGINES``, skipping engines that are not configured here."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ocrq.errors import EngineUnavailable, NoEngineConfigured
from ocrq.settings import Settings
from worker.engines.base import Engine
from worker.engines.chain import EngineChain

log = logging.getLogger(__name__)


def _tesseract(settings: Settings) -> Engine:
    from worker.engines.tesseract import TesseractEngine

    return TesseractEngine.from_settings(settings)


def _not_built_yet(name: str) -> Callable[[Settings], Engine]:
    def factory(_settings: Settings) -> Engine:
        raise EngineUnavailable(f"the {name} engine is not configured on this host")

    return factory


ENGINE_FACTORIES: dict[str, Callable[[Settings], Engine]] = {
    "vllm": _not_built_yet("vllm"),
    "transformers": _not_built_yet("transformers"),
    "tesseract": _tesseract,
}


def build_chain(settings: Settings) -> EngineChain:
    """Engines in configured order; an unavailable one is skipped with a log line, none at all is an error."""
    engines: list[Engine] = []
    skipped: list[str] = []
    for name in settings.engines:
        try:
            engines.append(ENGINE_FACTORIES[name](settings))
        except EngineUnavailable as error:
            log.info("engine %s skipped: %s", name, error.message)
            skipped.append(f"{name} ({error.message})")
    if not engines:
        raise NoEngineConfigured("no usable OCR engine: " + "; ".join(skipped))
    return EngineChain(engines)
