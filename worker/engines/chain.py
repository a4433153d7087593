"""Try engines in order until one produces a page; record every attempt.

The chain is the one place that decides what a failure means for the next
engine: an input error stops it, an engine failure moves on, and each engine's
circuit breaker keeps pages away from an engine that keeps failing.

Falling back is a decision, not a reflex: a page read by a fallback engine is
*degraded* (worse quality, counted and shown, redone on request). So while the
first (primary) engine has been down for less than its grace period
(``OCRQ_FALLBACK_AFTER_SECONDS``), a caller that can wait is told to hold the
page and try again, instead of handing it to the next engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from PIL import Image

from ocrq.db.models import utcnow
from ocrq.errors import (
    AllEnginesFailed,
    EngineFailed,
    OcrqError,
    PrimaryEngineDown,
    error_from_code,
    is_input_error_code,
)
from ocrq.jobs.attempts import AttemptRecord
from ocrq.schemas import PageResult, PageTask
from ocrq.worker.engines.base import Engine
from ocrq.worker.engines.breaker import CircuitBreaker

log = logging.getLogger(__name__)


class FallbackGrace:
    """How long pages wait for a failing primary engine before the chain falls back.

    The clock starts at the primary's first engine-side failure (or the first
    page its open circuit turns away) and stops at its next success. Zero
    seconds: fall back at once.
    """

    def __init__(self, after_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s, self.clock = after_s, clock
        self._down_since: float | None = None
        self._lock = threading.Lock()

    def primary_down(self) -> bool:
        """True when this starts the clock (the outage is news)."""
        with self._lock:
            if self._down_since is not None:
                return False
            self._down_since = self.clock()
            return True

    def primary_up(self) -> float | None:
        """How long the primary was down, when it was (None: it was up already)."""
        with self._lock:
            down, self._down_since = self._down_since, None
            return None if down is None else self.clock() - down

    def down_for(self) -> float | None:
        """Seconds the primary has been down, None while it works."""
        with self._lock:
            return None if self._down_since is None else self.clock() - self._down_since

    def holding(self) -> bool:
        down = self.down_for()
        return down is not None and down < self.after_s


@dataclass(frozen=True, slots=True)
class ChainOutcome:
    result: PageResult | None
    attempts: list[AttemptRecord] = field(default_factory=list)
    held: bool = False
    """The primary is down within its grace period: the page should wait and come back."""


class EngineChain:
    def __init__(
        self,
        engines: list[Engine],
        breakers: list[CircuitBreaker] | None = None,
        grace: FallbackGrace | None = None,
    ) -> None:
        if not engines:
            raise ValueError("an engine chain needs at least one engine")
        self.engines = engines
        self.breakers = breakers or [CircuitBreaker() for _ in engines]
        self.grace = grace or FallbackGrace(0.0)

    @property
    def primary(self) -> str:
        """The engine pages are meant for; any other one reads them *degraded*."""
        return self.engines[0].name

    @property
    def image_mode(self) -> str:
        return self.engines[0].image_mode

    @property
    def max_in_flight(self) -> int:
        return self.engines[0].max_in_flight

    def recognize(self, image: Image.Image, task: PageTask) -> tuple[PageResult | None, list[AttemptRecord]]:
        """The first engine's result, or None when all failed; attempts either way (never holds)."""
        outcome = self.read(image, task, may_hold=False)
        return outcome.result, outcome.attempts

    def read(self, image: Image.Image, task: PageTask, *, may_hold: bool) -> ChainOutcome:
        """Like :meth:`recognize`; with ``may_hold``, a page stops at a primary that is briefly down.

        An input error (the page itself is bad) stops the chain: another engine
        would fail the same way. Engines whose circuit is open are skipped
        without an attempt, except the primary when the page would otherwise
        degrade: a page falls back only on its own failed try, never on a
        circuit that another page (a poison page, say) keeps open.
        """
        attempts: list[AttemptRecord] = []
        for position, (engine, breaker) in enumerate(zip(self.engines, self.breakers, strict=True)):
            last_look = position == 0 and self._would_degrade(may_hold)
            result, attempt = self._try(engine, breaker, image, task, force=last_look)
            down = position == 0 and self._primary_down(attempt)
            if attempt is not None:
                attempts.append(attempt)
            if result is not None or (attempt is not None and is_input_error_code(attempt.error_code)):
                return ChainOutcome(result, attempts)
            if down and may_hold and self.grace.holding():
                return ChainOutcome(None, attempts, held=True)
        return ChainOutcome(None, attempts)

    def held_error(self) -> PrimaryEngineDown:
        down = self.grace.down_for() or 0.0
        return PrimaryEngineDown(
            f"{self.primary} has been failing for {down:.0f} s; pages wait for it up to "
            f"{self.grace.after_s:.0f} s (OCRQ_FALLBACK_AFTER_SECONDS) before another engine reads them"
        )

    def only(self, name: str) -> EngineChain | None:
        """A chain of just the engine ``name`` (with its breaker): what a redo reads pages with."""
        for engine, breaker in zip(self.engines, self.breakers, strict=True):
            if engine.name == name:
                return EngineChain([engine], [breaker])
        return None

    def close(self) -> None:
        for engine in self.engines:
            engine.close()

    def _would_degrade(self, may_hold: bool) -> bool:
        """Whether a failure of the primary now sends the page on (the grace is over or not offered)."""
        return self.grace.after_s > 0 and not (may_hold and self.grace.holding())

    def _try(
        self, engine: Engine, breaker: CircuitBreaker, image: Image.Image, task: PageTask, force: bool = False
    ) -> tuple[PageResult | None, AttemptRecord | None]:
        if not breaker.allow() and not force:
            return None, None
        result, attempt = _attempt(engine, image, task)
        _tell_breaker(breaker, attempt)
        return result, attempt

    def _primary_down(self, attempt: AttemptRecord | None) -> bool:
        """Note the primary's health; True when it is down in a way that may pass (worth waiting for).

        No attempt means its circuit is open. A page it could not read says
        nothing about its health."""
        if attempt is not None and attempt.outcome == "ok":
            if (down := self.grace.primary_up()) is not None:
                log.warning("engine %s is back after %.0f s", self.primary, down)
            return False
        if attempt is None or attempt.retryable:
            if self.grace.primary_down() and self.grace.after_s > 0:
                log.warning(
                    "engine %s is down; pages wait for it up to %.0f s (OCRQ_FALLBACK_AFTER_SECONDS) "
                    "before another engine reads them",
                    self.primary,
                    self.grace.after_s,
                )
            return True
        return False


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
