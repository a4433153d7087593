"""Decoded page images brought to what engines take: upright, grey or RGB, within a pixel budget.

Split from :mod:`ocrq.worker.documents.render` (which opens documents); these only touch pixels.
"""

from __future__ import annotations

import math
from typing import cast

from PIL import Image, ImageFile, ImageOps

NEAREST_ONLY_MODES = frozenset({"1", "P", "PA"})
"""Pillow resizes these by picking pixels; converting them first keeps thin strokes."""


def image_page(image: ImageFile.ImageFile, mode: str, max_pixels: int) -> Image.Image:
    """Decode the current frame upright, in ``mode``, within ``max_pixels``; a new image, never ``image``."""
    _draft_within(image, mode, max_pixels)
    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode in NEAREST_ONLY_MODES:
        return fit_pixels(_to_mode(image, mode), max_pixels)
    return _to_mode(fit_pixels(image, max_pixels), mode)


def _draft_within(image: ImageFile.ImageFile, mode: str, max_pixels: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 size (and straight to grey) instead of full then shrink."""
    if image.format != "JPEG":
        return
    width, height = image.size
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    image.draft(mode, (math.ceil(width * scale), math.ceil(height * scale)))


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Shrink, keeping the aspect ratio, to at most ``max_pixels``; small images are returned as they are."""
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Always a new image: transparency on white paper, deep pixels scaled, not clipped."""
    if image.has_transparency_data:
        image = _on_white(image)
    elif image.mode.startswith("I") or image.mode == "F":
        image = _scaled_to_grey(image)
    try:
        return image.convert(mode)
    except ValueError:  # Pillow converts some modes (LAB) only to RGB
        return image.convert("RGB").convert(mode)


def _on_white(image: Image.Image) -> Image.Image:
    """Transparent areas are blank paper, not black (what a plain convert would give)."""
    paper = Image.new("RGBA", image.size, "white")
    paper.alpha_composite(image.convert("RGBA"))
    return paper.convert("RGB")


def _scaled_to_grey(image: Image.Image) -> Image.Image:
    """16-bit and float pixels mapped onto 0-255 by their range; Pillow's convert clips them to white."""
    wide = image.convert("F")
    low, high = cast("tuple[float, float]", wide.getextrema())  # one band ("F"): its (min, max)
    low, high = min(float(low), 0.0), max(float(high), 255.0)
    if (low, high) == (0.0, 255.0):
        return wide.convert("L")
    scale = 255 / (high - low)
    return wide.point(lambda value: (value - low) * scale).convert("L")
