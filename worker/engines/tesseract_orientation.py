"""Turn a sideways or upside-down page upright before Tesseract reads it, and its boxes back after.

Tesseract's own ``PSM.AUTO_OSD`` read a 300 dpi Russian scan turned 90° two points of CER worse
than the same scan upright (bench/tesseract_gap.py): after detecting the turn it re-runs layout
analysis on a rotated copy of its thresholded image. Detecting the orientation ourselves
(``OSD_ONLY`` on a half-size copy, about a second), turning the grey page by a lossless
transpose and running ``PSM.AUTO`` on it reads the turned scan exactly as the upright one.

OSD needs text: on a page with a line or two its margin is small or it finds nothing. Then
the page is read in all four orientations and the one with the best mean word confidence is
kept, which costs four small reads on pages that are cheap to read.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from ocrq.schemas import LayoutCell, TextLine, Word

TURNS = (0, 90, 180, 270)
"""Counter-clockwise turns that make a page upright."""
MIN_ORIENTATION_MARGIN = 7.0
"""Tesseract's own ``min_orientation_margin``: below it, OSD's answer is a guess."""
OSD_MAX_PIXELS = 4_000_000
"""OSD finds the orientation as well on a half-size copy of a 300 dpi page, in a third of the time."""

_TRANSPOSE = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}

Box = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Orientation:
    turn: int
    """Counter-clockwise degrees that make the page upright."""
    margin: float

    @property
    def sure(self) -> bool:
        return self.margin >= MIN_ORIENTATION_MARGIN


def detect(osd_api: object, page: Image.Image, dpi: int) -> Orientation | None:
    """OSD's answer for ``page``; None when it found too little text to say anything."""
    sample, scale = _osd_sample(page)
    osd_api.SetImage(sample)  # type: ignore[attr-defined]
    osd_api.SetSourceResolution(max(70, round(dpi * scale)))  # type: ignore[attr-defined]
    try:
        found = osd_api.DetectOrientationScript()  # type: ignore[attr-defined]
    except RuntimeError:
        return None
    finally:
        osd_api.Clear()  # type: ignore[attr-defined]
    if not found:
        return None
    return Orientation(int(found["orient_deg"]) % 360, float(found["orient_conf"]))


def _osd_sample(page: Image.Image) -> tuple[Image.Image, float]:
    pixels = page.width * page.height
    if pixels <= OSD_MAX_PIXELS:
        return page, 1.0
    scale = (OSD_MAX_PIXELS / pixels) ** 0.5
    size = (max(1, round(page.width * scale)), max(1, round(page.height * scale)))
    return page.resize(size, Image.Resampling.BOX), scale


def turned(page: Image.Image, turn: int) -> Image.Image:
    """The page turned ``turn`` degrees counter-clockwise, pixel for pixel (no resampling)."""
    if turn == 0:
        return page
    upright = page.transpose(_TRANSPOSE[turn])
    upright.info["dpi"] = page.info.get("dpi")
    return upright


def cells_turned_back(cells: list[LayoutCell], turn: int, size: tuple[int, int]) -> list[LayoutCell]:
    """Cells read on the upright copy, in the frame of the page as it was given (``size``)."""
    if turn == 0:
        return cells
    return [_cell_back(cell, turn, size) for cell in cells]


def _cell_back(cell: LayoutCell, turn: int, size: tuple[int, int]) -> LayoutCell:
    lines = tuple(
        TextLine(
            _box_back(line.bbox, turn, size),
            tuple(Word(_box_back(word.bbox, turn, size), word.text) for word in line.words),
            (line.angle - turn) % 360,
        )
        for line in cell.lines
    )
    return LayoutCell(_box_back(cell.bbox, turn, size), cell.category, cell.text, lines)


def _box_back(box: Box, turn: int, size: tuple[int, int]) -> Box:
    """Undo a counter-clockwise ``turn`` of a page ``size`` (width, height before turning)."""
    width, height = size
    u0, v0, u1, v1 = box
    if turn == 90:
        return (width - v1, u0, width - v0, u1)
    if turn == 180:
        return (width - u1, height - v1, width - u0, height - v0)
    return (v0, height - u1, v1, height - u0)
