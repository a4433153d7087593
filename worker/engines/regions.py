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

from ocrq.jobs.attempts import AttemptRecord
from ocrq.schemas import LayoutCell, PageNote, PageResult, PageTask, TextLine, Word
from ocrq.worker.documents.render import OpenedDocument, PdfDocument
from ocrq.worker.documents.tiles import MAX_TILES, OVERLAP_INCHES, owning_tile, plan_tiles
from ocrq.worker.engines.chain import EngineChain

Box = tuple[int, int, int, int]
BLANK_LEVEL = 250
"""A tile whose darkest pixel is this light has nothing to read."""
TILE_FILL = 0.8
"""Tiles overlap, so a page is lowered to this share of MAX_TILES full tiles when it has to be."""
PLAN_TRIES = 4
"""Each try lowers the zoom by the tiles' excess; a few settle any page under MAX_TILES."""


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
    zoom, (width, height), tiles = _plan(document, index)
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
    else:  # an image is read at its own resolution, unless that took more than MAX_TILES tiles
        scale = "full resolution" if zoom >= 1 else f"{zoom:.0%} of full resolution"
        reading.notes.append(
            PageNote("tiled", f"read in {len(tiles)} tiles at {scale}: over OCRQ_MAX_PAGE_PIXELS")
        )
    return reading


def _plan(document: OpenedDocument, index: int) -> tuple[float, tuple[int, int], list[Box]]:
    """The zoom, page size and tiles: full resolution, or lowered until there are at most MAX_TILES."""
    zoom, (width, height) = document.full_size(index)
    cap = document.limits.max_page_pixels
    if width * height > MAX_TILES * cap * TILE_FILL:
        zoom *= math.sqrt(MAX_TILES * cap * TILE_FILL / (width * height))
    for _ in range(PLAN_TRIES):
        size = document.full_size_at(index, zoom)
        overlap = round(document.pixels_per_inch(index, zoom) * OVERLAP_INCHES)
        tiles = plan_tiles(*size, cap, overlap)
        if len(tiles) <= MAX_TILES:
            break
        zoom *= math.sqrt(MAX_TILES * TILE_FILL / len(tiles))  # bands overlap more than TILE_FILL allows
    return zoom, size, tiles


def _blank(image: Image.Image) -> bool:
    darkest = (image if image.mode == "L" else image.convert("L")).getextrema()[0]
    return isinstance(darkest, int | float) and darkest >= BLANK_LEVEL


def _keep_own_cells(found: PageResult, tile: Box, number: int, tiles: list[Box]) -> None:
    """Cells on the whole page, holding only the lines this tile owns (see :func:`_own_part`)."""
    moved = [shift_cell(cell, tile[0], tile[1]) for cell in found.cells]
    owned = (_own_part(cell, number, tiles) for cell in moved)
    found.cells = [cell for cell in owned if cell is not None]
    found.text = "\n\n".join(cell.text for cell in found.cells if cell.text)
    found.markdown = found.text


def _own_part(cell: LayoutCell, number: int, tiles: list[Box]) -> LayoutCell | None:
    """The part of ``cell`` tile ``number`` owns: its lines whose centre is nearest the tile's centre.

    Ownership is per line, not per cell: a paragraph spans tiles, so its centre lies in each of
    them and each would keep its copy. Per line, a line read twice in an overlap is kept once, and
    a line cut by the tile's edge (its centre nearer the neighbour's, which holds it whole) is
    dropped. A cell without lines (a VLM's) is kept whole by the tile nearest its centre.
    """
    if not cell.lines:
        return cell if owning_tile(cell.bbox, tiles) == number else None
    lines = tuple(line for line in cell.lines if owning_tile(line.bbox, tiles) == number)
    if len(lines) == len(cell.lines):
        return cell  # the engine's own text, with its breaks and hyphens
    if not lines:
        return None
    text = "\n".join(" ".join(word.text for word in line.words) for line in lines)
    return LayoutCell(_union([line.bbox for line in lines]), cell.category, text, lines)


def _union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _tile_notes(count: int, dpi: float, wanted: int) -> list[PageNote]:
    notes = [
        PageNote("tiled", f"read in {count} tiles at {dpi:.0f} dpi: the page exceeds OCRQ_MAX_PAGE_PIXELS")
    ]
    if dpi < wanted - 0.5:
        notes.append(
            PageNote("scale_note", f"read at {dpi:.0f} dpi instead of {wanted}: over {MAX_TILES} tiles")
        )
    return notes
