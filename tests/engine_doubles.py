"""Test doubles of the engine seam (not shipped): engines that fail on purpose, to drive the chain.

``flaky_chain`` is reachable from worker processes via ``OCRQ_CHAIN_FACTORY``.
"""

from __future__ import annotations

import os
import threading

from PIL import Image

from ocrq.errors import EngineUnavailable, OcrqError
from ocrq.schemas import PageResult, PageTask
from ocrq.settings import Settings
from ocrq.worker.engines.chain import EngineChain


class ScriptedEngine:
    """Raises the given error for its first ``failures`` pages, then answers with fixed text."""

    image_mode = "L"
    max_in_flight = 2

    def __init__(self, name: str, failures: int = 0, error: OcrqError | None = None) -> None:
        self.name, self.model = name, f"{name}-model"
        self.error = error or EngineUnavailable(f"{name} is down")
        self.calls = 0
        self._remaining = failures
        self._lock = threading.Lock()
        self.closed = False

    def recognize(self, image: Image.Image, task: PageTask) -> PageResult:
        with self._lock:
            self.calls += 1
            failing = self._remaining > 0
            self._remaining -= failing
        if failing:
            raise self.error
        return PageResult(f"read by {self.name}", f"read by {self.name}", self.name, self.model)

    def close(self) -> None:
        self.closed = True


def flaky_chain(_settings: Settings) -> EngineChain:
    """An engine that is down for the first ``OCRQ_TEST_FLAKY_FAILURES`` pages of this process."""
    failures = int(os.environ.get("OCRQ_TEST_FLAKY_FAILURES", "3"))
    return EngineChain([ScriptedEngine("flaky", failures)])
