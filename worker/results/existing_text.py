"""Words a PDF page already has are not written again.

A born-digital page, or one OCRed before, carries its own text. Laying ours over it would make
every search hit twice and every copy come out doubled, so each of our words whose centre falls
on a word the page already has is left out (as pdf-textlayer does), while the rest of the page,
say a scanned figure or a stamp on a typed letter, still gets its layer.
"""

from __future__ import annotations

import pymupdf

from ocrq.worker.results.words import PageWords, PlacedBlock, PlacedLine, PlacedWord

Rect = tuple[float, float, float, float]


def without_existing_text(page: pymupdf.Page, words: PageWords) -> PageWords:
    """``words`` less those on text the page shows already; the page itself is only read."""
    if not words.blocks:
        return words
    existing = _existing_boxes(page, words)
    if not existing:
        return words
    blocks = tuple(_block(block, existing) for block in words.blocks)
    return PageWords(words.index, words.width, words.height, blocks)


def _existing_boxes(page: pymupdf.Page, words: PageWords) -> list[Rect]:
    """The page's own word boxes in the pixel frame our words are in (the page as shown)."""
    scale_x, scale_y = words.width / page.rect.width, words.height / page.rect.height
    boxes = []
    for found in page.get_text("words"):
        box = pymupdf.Rect(found[:4]) * page.rotation_matrix
        boxes.append((box.x0 * scale_x, box.y0 * scale_y, box.x1 * scale_x, box.y1 * scale_y))
    return boxes


def _block(block: PlacedBlock, existing: list[Rect]) -> PlacedBlock:
    lines = (_line(line, existing) for line in block.lines)
    kept = tuple(line for line in lines if line is not None)
    return PlacedBlock(block.order, block.category, block.box, kept, block.measured)


def _line(line: PlacedLine, existing: list[Rect]) -> PlacedLine | None:
    kept = tuple(word for word in line.words if not _covered(word, existing))
    return PlacedLine(line.box, kept, line.angle) if kept else None


def _covered(word: PlacedWord, existing: list[Rect]) -> bool:
    x1, y1, x2, y2 = word.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return any(a <= cx <= c and b <= cy <= d for a, b, c, d in existing)
