"""Try engines in order until one produces a page; record every attempt.

Circuit breakers and retry ladders arrive with the vLLM engine; the chain is
the one place that decides what a failure means for the next engine.
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
from worker.engines.base import Engine

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
    def __init__(self, engines: list[Engine]) -> None:
        if not engines:
            raise ValueError("an engine chain needs at least one engine")
        self.engines = engines

    @property
    def image_mode(self) -> str:
        return self.engines[0].image_mode

    @property
    def max_in_flight(self) -> int:
        return self.engines[0].max_in_flight

    def recognize(self, image: Image.Image, task: PageTask) -> tuple[PageResult | None, list[AttemptRecord]]:
        """The first engine's result, or None when all failed; attempts either way.

        An input error (the page itself is bad) stops the chain: another engine
        would fail the same way.
        """
        attempts: list[AttemptRecord] = []
        for engine in self.engines:
            result, attempt = _attempt(engine, image, task)
            attempts.append(attempt)
            if result is not None or is_input_error_code(attempt.error_code):
                return result, attempts
        return None, attempts

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


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
    )


def _as_mode(image: Image.Image, mode: str) -> Image.Image:
    return image if image.mode == mode else image.convert(mode)


def chain_failure(attempts: list[AttemptRecord]) -> OcrqError:
    """The page's error once the chain gave up: the input error if an engine blamed the page."""
    last = attempts[-1]
    if last.error_code and is_input_error_code(last.error_code):
        return error_from_code(last.error_code, last.error_message or "")
    return AllEnginesFailed("; ".join(f"{a.engine}: {a.error_message}" for a in attempts))
