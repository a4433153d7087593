"""A circuit breaker per engine: stop sending pages to an engine that keeps failing, probe it later.

Without one, every page of a 1000-page batch would wait out the dead vLLM's
timeouts before falling back. Closed: pages flow. Open (after
``failure_threshold`` consecutive engine failures): the engine is skipped.
Half-open (``reset_after_s`` later): one page probes it; success closes the
circuit, failure opens it again. Only engine-side, retryable failures count:
a page the model could not read says nothing about the server's health.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        reset_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        first_probe_s: float | None = None,
    ) -> None:
        """``first_probe_s``: probe that soon after the circuit first opens, doubling up to
        ``reset_after_s`` while the engine stays down, so a short outage ends for the pages
        soon after the engine is back (None: always ``reset_after_s``)."""
        self.failure_threshold, self.reset_after_s, self.clock = failure_threshold, reset_after_s, clock
        self.first_probe_s = first_probe_s
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._opens = 0
        self._opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """May a page go to this engine now? In half-open state only one probe at a time may."""
        with self._lock:
            if self.state is BreakerState.OPEN and self.clock() - self._opened_at >= self._wait():
                self.state = BreakerState.HALF_OPEN
            if self.state is BreakerState.CLOSED:
                return True
            if self.state is BreakerState.HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self.state, self.failures, self._probing, self._opens = BreakerState.CLOSED, 0, False, 0

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
                self.state, self._opened_at = BreakerState.OPEN, self.clock()
                self._opens += 1
            self._probing = False

    def _wait(self) -> float:
        """How long the open circuit waits before its next probe."""
        if self.first_probe_s is None:
            return self.reset_after_s
        return min(self.reset_after_s, self.first_probe_s * 2 ** max(0, self._opens - 1))

    def release(self) -> None:
        """A probe that ended without a verdict on the engine (the page itself was bad)."""
        with self._lock:
            self._probing = False
