"""The model's own resize rule, applied on our side so layout boxes map back to page pixels exactly.

Qwen2-VL-style processors (dots.ocr included) snap both sides to multiples of the patch-merge
factor (28) within a pixel budget. If we left that to the server we would not know the frame its
boxes are in; resizing here first makes the server's resize a no-op and the mapping exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ocrq.errors import InputError

MAX_ASPECT_RATIO = 200
"""Qwen's processor refuses more elongated images; so do we, as the page's fault."""

Box = tuple[int, int, int, int]


def _round_by(value: float, factor: int) -> int:
    return round(value / factor) * factor


def _floor_by(value: float, factor: int) -> int:
    return math.floor(value / factor) * factor


def _ceil_by(value: float, factor: int) -> int:
    return math.ceil(value / factor) * factor


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) as dots.ocr's ``smart_resize``: multiples of ``factor``, area within the budget."""
    if min(height, width) <= 0:
        raise InputError(f"page has no pixels ({width}x{height})")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise InputError(f"page aspect ratio {width}x{height} exceeds {MAX_ASPECT_RATIO}:1")
    h_bar, w_bar = max(factor, _round_by(height, factor)), max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        return _shrink(height, width, factor, max_pixels)
    if h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = _ceil_by(height * beta, factor), _ceil_by(width * beta, factor)
        if h_bar * w_bar > max_pixels:
            return _shrink(h_bar, w_bar, factor, max_pixels)
    return h_bar, w_bar


def _shrink(height: float, width: float, factor: int, max_pixels: int) -> tuple[int, int]:
    beta = math.sqrt(height * width / max_pixels)
    return max(factor, _floor_by(height / beta, factor)), max(factor, _floor_by(width / beta, factor))


def fit_within(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """Aspect-preserving downscale only, for models whose processor tiles the image itself."""
    if height * width <= max_pixels:
        return height, width
    beta = math.sqrt(height * width / max_pixels)
    return max(1, math.floor(height / beta)), max(1, math.floor(width / beta))


@dataclass(frozen=True, slots=True)
class ResizePlan:
    """The page (or crop) as we have it and the size we send, with box mapping between the two frames."""

    source: tuple[int, int]
    """(width, height) of the image before resizing."""
    target: tuple[int, int]
    """(width, height) of the image the model sees."""
    offset: tuple[int, int] = (0, 0)
    """Where ``source`` sits on the page (non-zero for a grounding crop)."""
    padded: bool = False
    """``target`` is ``source`` padded with white at the right and bottom, not rescaled."""

    @property
    def identity(self) -> bool:
        return self.source == self.target

    def _scale(self) -> tuple[float, float]:
        """Model-frame pixels per source pixel (1 when padded: the page is not resampled)."""
        if self.padded:
            return 1.0, 1.0
        return self.target[0] / self.source[0], self.target[1] / self.source[1]

    def to_page(self, box: Box) -> Box:
        """A box in the model frame as page pixels, clamped to the source region."""
        sx, sy = (1 / scale for scale in self._scale())
        x1, y1, x2, y2 = box
        left, top = _clamp(x1 * sx, self.source[0]), _clamp(y1 * sy, self.source[1])
        right, bottom = _clamp(x2 * sx, self.source[0]), _clamp(y2 * sy, self.source[1])
        dx, dy = self.offset
        return (left + dx, top + dy, right + dx, bottom + dy)

    def to_model(self, box: Box) -> Box:
        """A page-pixel box in the model frame (for grounding prompts)."""
        sx, sy = self._scale()
        dx, dy = self.offset
        x1, y1, x2, y2 = box
        return (
            _clamp((x1 - dx) * sx, self.target[0]),
            _clamp((y1 - dy) * sy, self.target[1]),
            _clamp((x2 - dx) * sx, self.target[0]),
            _clamp((y2 - dy) * sy, self.target[1]),
        )


def _clamp(value: float, limit: int) -> int:
    return min(max(round(value), 0), limit)


def plan_resize(
    size: tuple[int, int], rule: str, factor: int, min_pixels: int, max_pixels: int
) -> ResizePlan:
    """The target size for an image of ``size`` (width, height) under a model's resize rule.

    When the page already fits the budget, snapping it to the grid by padding a few white pixels
    gives the model the page at 1:1 (sharper) and costs a paste, not a resample (a fifth of the
    time on an A4 page at 200 DPI); the smart-resize rule then leaves the padded image unchanged.
    """
    width, height = size
    if rule != "smart":
        new_h, new_w = fit_within(height, width, max_pixels)
        return ResizePlan(size, (new_w, new_h))
    new_h, new_w = smart_resize(height, width, factor, min_pixels, max_pixels)
    pad_w, pad_h = _ceil_by(width, factor), _ceil_by(height, factor)
    if min_pixels <= pad_w * pad_h <= max_pixels and (pad_w, pad_h) != (width, height):
        return ResizePlan(size, (pad_w, pad_h), padded=True)
    return ResizePlan(size, (new_w, new_h))
