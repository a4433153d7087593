"""Try engines in order until one produces a page; record every attempt.

The chain is the one place that decides what a failure means for the next
engine: an input error stops it, an engine failure moves on, and each engine's
circuit breaker keeps pages away from an engine that keeps failing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from PIL import Image

from ocrq.db.models import utcnow
from ocrq.errors import AllEnginesFailed, EngineFailed, OcrqError, error_from_code, is_input_error_code
from ocrq.schemas import PageResult, PageTask
from ocrq.worker.engines.base import Engine
from ocrq.worker.engines.breaker import CircuitBreaker

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    engine: str
    model: str
    started_at: datetime
    duration_ms: float
    outcome: str
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False
    """Whether the failure may pass (not stored: it decides the page's fate)."""

    def as_row(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            "model": self.model,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }


class EngineChain:
    def __init__(self, engines: list[Engine], breakers: list[CircuitBreaker] | None = None) -> None:
        if not engines:
            raise ValueError("an engine chain needs at least one engine")
        self.engines = engines
        self.breakers = breakers or [CircuitBreaker() for _ in engines]

    @property
    def image_mode(self) -> str:
        return self.engines[0].image_mode

    @property
    def max_in_flight(self) -> int:
        return self.engines[0].max_in_flight

    def recognize(self, image: Image.Image, task: PageTask) -> tuple[PageResult | None, list[AttemptRecord]]:
        """The first engine's result, or None when all failed; attempts either way.

        An input error (the page itself is bad) stops the chain: another engine
        would fail the same way. Engines whose circuit is open are skipped
        without an attempt.
        """
        attempts: list[AttemptRecord] = []
        for engine, breaker in zip(self.engines, self.breakers, strict=True):
            if not breaker.allow():
                continue
            result, attempt = _attempt(engine, image, task)
            _tell_breaker(breaker, attempt)
            attempts.append(attempt)
            if result is not None or is_input_error_code(attempt.error_code):
                return result, attempts
        return None, attempts

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


def _tell_breaker(breaker: CircuitBreaker, attempt: AttemptRecord) -> None:
    if attempt.outcome == "ok":
        breaker.record_success()
    elif attempt.retryable:
        breaker.record_failure()
    else:
        breaker.release()


def _attempt(engine: Engine, image: Image.Image, task: PageTask) -> tuple[PageResult | None, AttemptRecord]:
    started, clock = utcnow(), time.perf_counter()
    try:
        result = engine.recognize(_as_mode(image, engine.image_mode), task)
    except OcrqError as error:
        log.warning("engine %s failed: %s (%s)", engine.name, error.message, error.code)
        return None, _record(engine, started, clock, "error", error)
    except Exception as exc:  # an engine bug must cost one attempt, not the batch
        log.exception("engine %s raised unexpectedly", engine.name)
        failed = EngineFailed(f"unexpected {type(exc).__name__}: {exc}")
        return None, _record(engine, started, clock, "error", failed)
    return result, _record(engine, started, clock, "ok", None)


def _record(
    engine: Engine, started: datetime, clock: float, outcome: str, error: OcrqError | None
) -> AttemptRecord:
    return AttemptRecord(
        engine.name,
        engine.model,
        started,
        (time.perf_counter() - clock) * 1000,
        outcome,
        error.code if error else None,
        error.message if error else None,
        error.retryable if error else False,
    )


def _as_mode(image: Image.Image, mode: str) -> Image.Image:
    return image if image.mode == mode else image.convert(mode)


def chain_failure(attempts: list[AttemptRecord]) -> OcrqError:
    """The page's error once the chain gave up.

    The input error if an engine blamed the page; otherwise retryable when an
    engine might recover (a server error, an open circuit: no attempt at all).
    """
    if attempts and attempts[-1].error_code and is_input_error_code(attempts[-1].error_code):
        return error_from_code(attempts[-1].error_code, attempts[-1].error_message or "")
    if not attempts:
        return AllEnginesFailed("every engine's circuit is open (engines failing); the page will be retried")
    message = "; ".join(f"{a.engine}: {a.error_message}" for a in attempts)
    return AllEnginesFailed(message, retryable=any(a.retryable for a in attempts))
