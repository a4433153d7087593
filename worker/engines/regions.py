"""OCR a part of a page image and place what was read back on the whole page.

Two callers need it: a born-digital page whose text comes from its layer but which also
shows a picture large enough to hold text (a pasted scan, a stamped note), and a page too
large for the pixel cap, read in tiles at the job's DPI instead of shrunk below legibility.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from PIL import Image

from ocrq.schemas import LayoutCell, PageNote, PageResult, PageTask, TextLine, Word
from ocrq.worker.documents.render import OpenedDocument, PdfDocument
from ocrq.worker.documents.tiles import MAX_TILES, OVERLAP_INCHES, owning_tile, plan_tiles
from ocrq.worker.engines.chain import AttemptRecord, EngineChain

Box = tuple[int, int, int, int]
BLANK_LEVEL = 250
"""A tile whose darkest pixel is this light has nothing to read."""
TILE_FILL = 0.8
"""Tiles overlap, so a page is lowered to this share of MAX_TILES full tiles when it has to be."""


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


@dataclass
class TiledReading:
    result: PageResult | None
    attempts: list[AttemptRecord]
    size: tuple[int, int]
    notes: list[PageNote]
    render_ms: float = 0.0


def read_in_tiles(chain: EngineChain, document: OpenedDocument, index: int, task: PageTask) -> TiledReading:
    """A page too large for the pixel cap, OCRed tile by tile at the job's DPI (fewer dpi past MAX_TILES)."""
    zoom, (width, height) = document.full_size(index)
    cap = document.limits.max_page_pixels
    if width * height > MAX_TILES * cap * TILE_FILL:
        zoom *= math.sqrt(MAX_TILES * cap * TILE_FILL / (width * height))
        width, height = document.full_size_at(index, zoom)
    tiles = plan_tiles(width, height, cap, round(zoom * 72 * OVERLAP_INCHES))
    reading = TiledReading(None, [], (width, height), [])
    for number, tile in enumerate(tiles):
        clock = time.perf_counter()
        image, drawn = document.render_region(index, zoom, tile, chain.image_mode)
        reading.render_ms += (time.perf_counter() - clock) * 1000
        reading.notes += [note for note in drawn if note not in reading.notes]
        if _blank(image):
            continue  # most of a huge page is paper: no OCR pass for a tile without ink
        found, tried = chain.recognize(image, task)
        reading.attempts += tried
        if found is None:
            reading.result = None
            return reading
        _keep_own_cells(found, tile, number, tiles)
        if reading.result is None:
            reading.result = found
        else:
            append_region(reading.result, found)
    if reading.result is None:  # every tile blank: an empty page, not a failure
        first = chain.engines[0]
        reading.result = PageResult("", "", first.name, first.model)
    if isinstance(document, PdfDocument):
        reading.notes += _tile_notes(len(tiles), zoom * 72, document.limits.dpi)
    else:  # an image is read at its own resolution (the source cap keeps it under MAX_TILES)
        reading.notes.append(
            PageNote("tiled", f"read in {len(tiles)} tiles at full resolution: over OCRQ_MAX_PAGE_PIXELS")
        )
    return reading


def _blank(image: Image.Image) -> bool:
    darkest = (image if image.mode == "L" else image.convert("L")).getextrema()[0]
    return isinstance(darkest, int | float) and darkest >= BLANK_LEVEL


def _keep_own_cells(found: PageResult, tile: Box, number: int, tiles: list[Box]) -> None:
    """Cells on the whole page; those nearer another tile's centre are that tile's (overlaps)."""
    moved = [shift_cell(cell, tile[0], tile[1]) for cell in found.cells]
    found.cells = [cell for cell in moved if owning_tile(cell.bbox, tiles) == number]
    found.text = "\n\n".join(cell.text for cell in found.cells if cell.text)
    found.markdown = found.text


def _tile_notes(count: int, dpi: float, wanted: int) -> list[PageNote]:
    notes = [
        PageNote("tiled", f"read in {count} tiles at {dpi:.0f} dpi: the page exceeds OCRQ_MAX_PAGE_PIXELS")
    ]
    if dpi < wanted - 0.5:
        notes.append(
            PageNote("scale_note", f"read at {dpi:.0f} dpi instead of {wanted}: over {MAX_TILES} tiles")
        )
    return notes
