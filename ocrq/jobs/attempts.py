"""One engine's try at one page, as the attempts table stores it.

The worker's engine chain makes these and the job store writes them; the record lives in the kernel
so the store needs nothing from the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
