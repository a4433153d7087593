"""Build the engine chain from ``OCRQ_ENGINES``, skipping engines that are not configured here."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from ocrq.errors import ConfigurationError, EngineUnavailable, NoEngineConfigured
from ocrq.settings import Settings
from ocrq.worker.engines.base import Engine
from ocrq.worker.engines.breaker import CircuitBreaker
from ocrq.worker.engines.chain import EngineChain, FallbackGrace

log = logging.getLogger(__name__)


def _tesseract(settings: Settings) -> Engine:
    from ocrq.worker.engines.tesseract import TesseractEngine

    return TesseractEngine.from_settings(settings)


def _vllm(settings: Settings) -> Engine:
    from ocrq.worker.engines.vllm.engine import vllm_engine

    return vllm_engine(settings)


def _transformers(settings: Settings) -> Engine:
    """In-process, or on the ``serve-hf`` server ``OCRQ_TRANSFORMERS_URL`` names."""
    if settings.transformers_url:
        from ocrq.worker.engines.hf.remote import remote_transformers_engine

        return remote_transformers_engine(settings)
    from ocrq.worker.engines.hf.engine import transformers_engine

    return transformers_engine(settings)


ENGINE_FACTORIES: dict[str, Callable[[Settings], Engine]] = {
    "vllm": _vllm,
    "transformers": _transformers,
    "tesseract": _tesseract,
}


def build_chain(settings: Settings) -> EngineChain:
    """Engines in configured order; an unavailable one is skipped with a log line, none at all is an error."""
    if settings.chain_factory:
        return _custom_factory(settings.chain_factory)(settings)
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
    breakers = [
        CircuitBreaker(
            settings.breaker_failures,
            settings.breaker_reset_seconds,
            first_probe_s=min(settings.breaker_first_probe_seconds, settings.breaker_reset_seconds),
        )
        for _ in engines
    ]
    return EngineChain(engines, breakers, FallbackGrace(settings.fallback_after_seconds))


def _custom_factory(dotted: str) -> Callable[[Settings], EngineChain]:
    module_name, _, attribute = dotted.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigurationError(f"OCRQ_CHAIN_FACTORY {dotted!r} cannot be loaded: {error}") from error
