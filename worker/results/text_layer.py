"""The invisible text of a run of pages, drawn by OCRmyPDF's fpdf2 renderer into a text-only PDF.

We hand OCRmyPDF's renderer our words instead of writing PDF operators ourselves: it already
solved the pitfalls peers hit (a layer turning visible, #1631; poppler splitting words onto lines
because ``Tz`` does not survive ``BT``/``ET``, #1632, so each line is one text object; highlights
running past words, #1635, so each word is stretched to its own box) and embeds a subset of Noto
Sans, which covers Cyrillic, with a ToUnicode map so extraction gives back real Unicode.
:mod:`ocrq.worker.results.searchable_pdf` lays each of these pages over its source page.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from ocrmypdf.font import MultiFontManager
from ocrmypdf.fpdf_renderer import Fpdf2MultiPageRenderer
from ocrmypdf.models.ocr_element import BoundingBox, OcrClass, OcrElement

from ocrq.worker.results.words import Box, PageWords, PlacedBlock, PlacedLine

POINTS_PER_INCH = 72.0


@lru_cache(maxsize=1)
def _fonts() -> MultiFontManager:
    """Fonts are parsed once per process: loading Noto costs more than drawing a page."""
    return MultiFontManager()


def render_text_pages(pages: Sequence[tuple[PageWords, float]], target: Path) -> list[int]:
    """Draw each ``(page, points_wide)`` with words as one text-only page of ``target``.

    Returns the page indexes drawn, in order; pages without a word are left out, and no
    file is written when none has one.
    """
    drawn = [(words, width) for words, width in pages if _has_words(words)]
    if drawn:
        trees = [
            (number, page_tree(words, width), _dpi(words, width))
            for number, (words, width) in enumerate(drawn)
        ]
        Fpdf2MultiPageRenderer(trees, _fonts()).render(target)
    return [words.index for words, _ in drawn]


def page_tree(page: PageWords, points_wide: float) -> OcrElement:
    """OCRmyPDF's element tree for a page: blocks are paragraphs, then lines, then words."""
    paragraphs = [_paragraph(block) for block in page.blocks if block.lines]
    return OcrElement(
        ocr_class=OcrClass.PAGE,
        bbox=BoundingBox(0, 0, page.width, page.height),
        dpi=_dpi(page, points_wide),
        children=paragraphs,
    )


def _dpi(page: PageWords, points_wide: float) -> float:
    """The resolution that makes the page's pixel frame exactly as wide as the PDF page."""
    return page.width * POINTS_PER_INCH / points_wide


def _paragraph(block: PlacedBlock) -> OcrElement:
    lines = [_line(line) for line in block.lines]
    return OcrElement(ocr_class=OcrClass.PARAGRAPH, bbox=_bbox(block.box), children=lines)


def _line(line: PlacedLine) -> OcrElement:
    words = [OcrElement(ocr_class=OcrClass.WORD, bbox=_bbox(w.box), text=w.text) for w in line.words]
    return OcrElement(ocr_class=OcrClass.LINE, bbox=_bbox(line.box), children=words, textangle=line.angle)


def _bbox(box: Box) -> BoundingBox:
    return BoundingBox(*box)


def _has_words(page: PageWords) -> bool:
    return any(block.lines for block in page.blocks)
