"""Spot runaway generation: a tail that repeats one unit, or one n-gram said far too often.

dots.ocr (like most OCR VLMs) sometimes loops on dot leaders, underscores or empty table cells
until ``max_tokens``; the output is then useless past the loop and costly to produce, so the engine
retries differently. Thresholds are conservative: a genuine page rarely repeats 200+ characters
verbatim at its very end, and never a 10-word phrase twenty times.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

TAIL_WINDOW = 20_000
"""Only the end of the output is examined: a loop runs until the token limit, so it is at the tail."""


@dataclass(frozen=True, slots=True)
class LoopLimits:
    max_unit: int = 200
    """Longest repeating unit looked for, in characters."""
    min_repeats: int = 8
    min_span: int = 200
    """A periodic tail shorter than this is content (``...`` leaders, ``----`` rules), not a loop."""
    ngram: int = 10
    ngram_repeats: int = 20


DEFAULT_LIMITS = LoopLimits()


@dataclass(frozen=True, slots=True)
class Loop:
    start: int
    """Index in the text where the repetition begins (keep ``text[:start + len(unit)]``)."""
    unit: str
    repeats: float


def find_tail_loop(text: str, limits: LoopLimits = DEFAULT_LIMITS) -> Loop | None:
    """The shortest unit whose repetition makes up the end of ``text``, if long enough to be a loop."""
    base = max(0, len(text) - TAIL_WINDOW)
    tail = text[base:]
    for period in range(1, min(limits.max_unit, len(tail) // 2) + 1):
        span = _periodic_suffix(tail, period)
        if span >= limits.min_span and span / period >= limits.min_repeats:
            start = base + len(tail) - span
            return Loop(start, text[start : start + period], span / period)
    return None


def _periodic_suffix(text: str, period: int) -> int:
    """Length of the longest suffix with ``s[i] == s[i + period]`` throughout (binary search on slices)."""
    length = len(text)
    if text[length - period - 1 : length - 1 - period + 1] != text[length - 1 : length]:
        return 0
    low, high = period, length  # suffix lengths: low is periodic, find the largest that is
    while low < high:
        middle = (low + high + 1) // 2
        if text[length - middle + period :] == text[length - middle : length - period]:
            low = middle
        else:
            high = middle - 1
    return low


def find_ngram_loop(text: str, limits: LoopLimits = DEFAULT_LIMITS) -> Loop | None:
    """A word n-gram repeated ``ngram_repeats`` times or more anywhere: a loop with small variations."""
    words = re.findall(r"\S+", text[-TAIL_WINDOW * 5 :])
    if len(words) < limits.ngram * limits.ngram_repeats:
        return None
    grams = Counter(tuple(words[i : i + limits.ngram]) for i in range(len(words) - limits.ngram + 1))
    gram, count = grams.most_common(1)[0]
    if count < limits.ngram_repeats:
        return None
    unit = " ".join(gram)
    return Loop(max(text.find(unit), 0), unit, float(count))


def find_loop(text: str, limits: LoopLimits = DEFAULT_LIMITS) -> Loop | None:
    return find_tail_loop(text, limits) or find_ngram_loop(text, limits)


def cut_loop(text: str, loop: Loop) -> str:
    """The text before the loop, keeping one instance of the repeated unit."""
    return text[: loop.start + len(loop.unit)].rstrip()
