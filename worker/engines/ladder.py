"""The retry ladder every VLM engine climbs when a generation loops or is cut short.

One page, several generations: a looping or truncated answer is asked again on the next rung (more
output tokens for an honest truncation with room left, otherwise a hotter sample to leave the
loop), and the best answer seen wins. vLLM (over HTTP) and Transformers (in-process) differ only in
how one rung is generated, so the climbing, the choice of the best answer and the token accounting
live here once, and a page reads alike whichever engine produced it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ocrq.errors import DegenerateOutput
from ocrq.worker.ocr_output.reading import Reading

log = logging.getLogger(__name__)

TEMPERATURE_STEP = 0.3
MAX_TEMPERATURE = 1.0


@dataclass(frozen=True, slots=True)
class Rung:
    """Sampling for one generation; the retry ladder climbs these."""

    temperature: float
    max_tokens: int


@dataclass(frozen=True, slots=True)
class Step:
    """What one generation gave: the reading, its cost, and the rung it really ran on."""

    reading: Reading
    rung: Rung
    """The rung used; an engine may lower ``max_tokens`` to fit its context."""
    tokens_in: int | None
    tokens_out: int | None
    room: int | None = None
    """Output tokens the context still allows after this prompt (None: unknown, no cap)."""


@dataclass(slots=True)
class Climb:
    """A page's generations across the ladder, with their summed cost."""

    tokens_in: int = 0
    tokens_out: int = 0
    readings: list[Reading] = field(default_factory=list)

    def add(self, step: Step) -> None:
        self.tokens_in += step.tokens_in or 0
        self.tokens_out += step.tokens_out or 0
        self.readings.append(step.reading)

    def best(self, who: str) -> Reading:
        """The best reading, or :class:`DegenerateOutput` naming what went wrong on every rung."""
        reading = best_reading(self.readings)
        if reading is None:
            raise DegenerateOutput(
                f"{who} gave no usable answer in {len(self.readings)} generations "
                f"(looped={any(r.looped for r in self.readings)}, "
                f"truncated={any(r.truncated for r in self.readings)})"
            )
        return reading


def climb(first: Rung, retries: int, generate: Callable[[Rung], Step]) -> Climb:
    """Generate on ``first``, then up to ``retries`` more rungs while the answer is not clean."""
    done, rung = Climb(), first
    for _ in range(retries + 1):
        step = generate(rung)
        done.add(step)
        if step.reading.clean:
            break
        log.info(
            "answer not clean (looped=%s truncated=%s), next rung",
            step.reading.looped,
            step.reading.truncated,
        )
        rung = next_rung(step.rung, step.reading, step.room)
    return done


def next_rung(rung: Rung, reading: Reading, room: int | None) -> Rung:
    """More output tokens for an honest truncation (content so far, no loop) with room left;
    otherwise a hotter sample, to leave a loop or an answer that went wrong from the start."""
    if reading.truncated and not reading.looped and reading.usable:
        bigger = rung.max_tokens * 2 if room is None else min(rung.max_tokens * 2, room)
        if bigger > rung.max_tokens:
            return replace(rung, max_tokens=bigger)
    hotter = min(MAX_TEMPERATURE, max(rung.temperature, 0.0) + TEMPERATURE_STEP)
    return replace(rung, temperature=hotter)


def best_reading(readings: list[Reading]) -> Reading | None:
    """Prefer loop-free, then complete, then the most content; None when nothing is usable."""
    usable = [reading for reading in readings if reading.usable]
    if not usable:
        return None
    return max(usable, key=lambda r: (not r.looped, not r.truncated, len(r.cells), len(r.text)))
