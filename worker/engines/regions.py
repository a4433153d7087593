"""OCR a part of a page image and place what was read back on the whole page.

Two callers need it: a born-digital page whose text comes from its layer but which also
shows a picture large enough to hold text (a pasted scan, a stamped note), and a page too
large for the pixel cap, read in tiles at the job's DPI instead of shrunk below legibility.
"""

from __future__ import annotations

from PIL import Image

from ocrq.schemas import LayoutCell, PageResult, PageTask, TextLine, Word
from ocrq.worker.engines.chain import AttemptRecord, EngineChain

Box = tuple[int, int, int, int]


def recognize_region(
    chain: EngineChain, image: Image.Image, region: Box, task: PageTask
) -> tuple[PageResult | None, list[AttemptRecord]]:
    """The chain's result for ``region`` of ``image``, its cells moved into the whole image's frame."""
    part = image.crop(region)
    part.info["dpi"] = image.info.get("dpi")  # engines size text by it
    result, attempts = chain.recognize(part, task)
    if result is not None:
        result.cells = [shift_cell(cell, region[0], region[1]) for cell in result.cells]
    return result, attempts


def shift_cell(cell: LayoutCell, dx: int, dy: int) -> LayoutCell:
    lines = tuple(
        TextLine(
            _shift(line.bbox, dx, dy),
            tuple(Word(_shift(w.bbox, dx, dy), w.text) for w in line.words),
            line.angle,
        )
        for line in cell.lines
    )
    return LayoutCell(_shift(cell.bbox, dx, dy), cell.category, cell.text, lines)


def _shift(box: Box, dx: int, dy: int) -> Box:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def append_region(result: PageResult, region: PageResult) -> None:
    """Add a region's cells and text after the page's own (reading order: page first)."""
    result.cells.extend(region.cells)
    result.text = "\n\n".join(part for part in (result.text, region.text) if part)
    result.markdown = "\n\n".join(part for part in (result.markdown, region.markdown) if part)
    result.ocr_ms += region.ocr_ms
