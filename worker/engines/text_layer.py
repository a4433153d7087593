"""The ``text_layer`` engine: a PDF page's own text, exact, with no rendering and no OCR.

Most PDFs in an office folder were typeset, not scanned; their text is in the file. PyMuPDF
reads it in the layer's order with every word's box, which keeps the searchable PDF exact and
costs milliseconds instead of an OCR pass. :mod:`ocrq.worker.engines.text_layer_gate` decides per
page whether the layer can be trusted; rejected pages go to the OCR chain.

The result has the same shape as an OCR engine's: text, Markdown (headings by font size, list
items, ruled tables as Markdown) and dots.ocr layout cells whose boxes are page pixels at the
job's DPI, in the frame the page would be rendered in (``/Rotate`` applied).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any

import pymupdf

from ocrq.schemas import LayoutCell, PageNote, PageResult, TextLine, Word
from ocrq.worker.engines.text_layer_gate import ACCEPTED, judge_layer

ENGINE_NAME = "text_layer"
MODEL = f"pymupdf-{pymupdf.__version__}"
TEXT_FLAGS = pymupdf.TEXTFLAGS_TEXT
"""The flags of ``get_text("text")``: ligatures and whitespace as typeset, text clipped to the page."""
TITLE_SCALE, HEADER_SCALE = 1.6, 1.15
"""A block whose font is this much larger than the page's body text is a title / section header."""
PICTURE_MIN_SQUARE_INCHES = 2.0
"""Pictures at least this large may hold text the layer lacks (a pasted scan): they are OCRed.
A logo or an icon is smaller."""
PICTURE_MIN_PPI = 150
PICTURE_MARGIN_INCHES = 0.2
TABLE_MIN_RULES = 6
"""Ruling lines below which a page is not searched for tables (the search costs 0.1-1.5 s)."""
LIST_ITEM = re.compile(r"^\s*([•◦▪‣∙●○■□\-–—*]|\(?\d{1,2}[.)]|\(?[a-z][.)])\s+")

Box = tuple[int, int, int, int]


class PixelFrame:
    """Maps unrotated page points to pixels of the page as rendered at ``zoom``."""

    def __init__(self, page: pymupdf.Page, zoom: float) -> None:
        self.matrix = page.rotation_matrix * pymupdf.Matrix(zoom, zoom)
        shown = (page.rect * pymupdf.Matrix(zoom, zoom)).irect
        self.size = (shown.width, shown.height)
        self.turn = page.rotation_matrix

    def box(self, rect: Any) -> Box:
        moved = pymupdf.Rect(rect) * self.matrix
        width, height = self.size
        clamp = lambda value, top: min(max(round(value), 0), top)  # noqa: E731
        return (
            clamp(moved.x0, width),
            clamp(moved.y0, height),
            clamp(moved.x1, width),
            clamp(moved.y1, height),
        )

    def angle(self, direction: tuple[float, float]) -> int:
        """Counter-clockwise turn of a line's text in the shown page, to the nearest quarter."""
        dx, dy = direction
        shown_x = dx * self.turn.a + dy * self.turn.c
        shown_y = dx * self.turn.b + dy * self.turn.d
        return round(math.degrees(math.atan2(-shown_y, shown_x)) / 90) % 4 * 90


@dataclass(frozen=True, slots=True)
class LayerReading:
    """The gate's verdict, and the page read from its layer when it may be used."""

    verdict: PageNote
    result: PageResult | None
    size: tuple[int, int]
    """The page's pixel size at the render zoom: the frame of the cells' boxes."""
    zoom: float
    damage: tuple[PageNote, ...] = ()
    """What MuPDF complained about while the layer was read."""
    doubt: str | None = None
    """Why the accepted layer should be checked against OCR before it is used."""
    scans: tuple[Box, ...] = ()
    """Pictures on the page that may hold text the layer lacks (OCRed on top of the layer)."""

    @property
    def notes(self) -> tuple[PageNote, ...]:
        return (self.verdict, *self.damage)

    def with_damage(self, damage: list[PageNote]) -> LayerReading:
        if self.result is not None:
            self.result.notes.extend(damage)
        return replace(self, damage=tuple(damage))


def read_text_layer(page: pymupdf.Page, zoom: float, keep_rejected: bool = False) -> LayerReading:
    """The page read from its layer, or no result when the gate rejects it.

    ``keep_rejected`` (``OCRQ_TEXT_LAYER=only``) keeps a rejected layer anyway, its note saying why
    it would have been OCRed.
    """
    started = time.perf_counter()
    textpage = page.get_textpage(flags=TEXT_FLAGS)
    text = page.get_text("text", textpage=textpage)
    judged = judge_layer(page, text)
    verdict = judged.note()
    frame = PixelFrame(page, zoom)
    if verdict.code != ACCEPTED and not keep_rejected:
        return LayerReading(verdict, None, frame.size, zoom)
    cells = layer_cells(page, textpage, frame)
    result = PageResult(
        text=text.strip(),
        markdown=cells_markdown(cells),
        engine=ENGINE_NAME,
        model=MODEL,
        cells=cells,
        ocr_ms=(time.perf_counter() - started) * 1000,
        notes=[verdict],
    )
    doubt = None if keep_rejected else judged.doubt
    scans = () if keep_rejected else scan_like_pictures(page, frame)
    return LayerReading(verdict, result, frame.size, zoom, doubt=doubt, scans=scans)


def text_pictures(reading: LayerReading) -> list[Box]:
    """Pictures of a layer page worth OCRing, padded, in page pixels (see :func:`_scan_like`)."""
    if reading.result is None:
        return []
    margin = round(reading.zoom * 72 * PICTURE_MARGIN_INCHES)
    return [_padded(box, margin, reading.size) for box in reading.scans]


def scan_like_pictures(page: pymupdf.Page, frame: PixelFrame) -> tuple[Box, ...]:
    """Pictures that may hold text the layer lacks: large, and fine enough to carry body text.

    A pasted scan of a note is 200-300 pixels per inch; a logo is small, and figures in
    typeset documents are usually screen resolution (72-96), where OCR finds only noise.
    """
    found = []
    for info in page.get_image_info():
        box = pymupdf.Rect(info["bbox"])
        inches_wide, inches_high = box.width / 72, box.height / 72
        if inches_wide * inches_high < PICTURE_MIN_SQUARE_INCHES:
            continue
        if max(info["width"], info["height"]) / max(inches_wide, inches_high) >= PICTURE_MIN_PPI:
            found.append(frame.box(box))
    return tuple(found)


def _padded(box: Box, margin: int, size: tuple[int, int]) -> Box:
    """Tesseract misreads text that touches the image edge; a margin of page around it helps."""
    return (
        max(box[0] - margin, 0),
        max(box[1] - margin, 0),
        min(box[2] + margin, size[0]),
        min(box[3] + margin, size[1]),
    )


def layer_cells(page: pymupdf.Page, textpage: pymupdf.TextPage, frame: PixelFrame) -> list[LayoutCell]:
    """Text blocks in the layer's order, then pictures; ruled tables replace the blocks inside them."""
    blocks = [b for b in page.get_text("dict", textpage=textpage)["blocks"] if b["type"] == 0]
    words = _words_by_line(page.get_text("words", textpage=textpage), frame)
    body = _body_size(blocks)
    cells = [cell for block in blocks if (cell := _text_cell(block, words, frame, body)) is not None]
    cells = _with_tables(page, cells, frame, words)
    pictures = [LayoutCell(frame.box(info["bbox"]), "Picture") for info in page.get_image_info()]
    return cells + [cell for cell in pictures if cell.bbox[2] > cell.bbox[0] and cell.bbox[3] > cell.bbox[1]]


def _words_by_line(found: list[tuple[Any, ...]], frame: PixelFrame) -> dict[tuple[int, int], list[Word]]:
    lines: dict[tuple[int, int], list[Word]] = defaultdict(list)
    for x0, y0, x1, y1, text, block, line, _ in found:
        lines[(block, line)].append(Word(frame.box((x0, y0, x1, y1)), text))
    return lines


def _body_size(blocks: list[dict[str, Any]]) -> float:
    """The font size most characters on the page are set in."""
    sizes: Counter[float] = Counter()
    for span in _spans(blocks):
        sizes[round(span["size"], 1)] += len(span["text"].strip())
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _spans(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [span for block in blocks for line in block["lines"] for span in line["spans"]]


def _text_cell(
    block: dict[str, Any], words: dict[tuple[int, int], list[Word]], frame: PixelFrame, body: float
) -> LayoutCell | None:
    line_texts = ["".join(span["text"] for span in line["spans"]).strip() for line in block["lines"]]
    text = "\n".join(line for line in line_texts if line)
    if not text:
        return None
    lines = tuple(
        TextLine(frame.box(line["bbox"]), tuple(mine), frame.angle(line["dir"]))
        for number, line in enumerate(block["lines"])
        if (mine := words.get((block["number"], number)))
    )
    return LayoutCell(frame.box(block["bbox"]), _category(block, text, body), text, lines)


def _category(block: dict[str, Any], text: str, body: float) -> str:
    size = max((span["size"] for span in _spans([block]) if span["text"].strip()), default=0.0)
    if body and size >= body * TITLE_SCALE:
        return "Title"
    if body and size >= body * HEADER_SCALE and len(text) < 200:
        return "Section-header"
    if LIST_ITEM.match(text):
        return "List-item"
    return "Text"


def _with_tables(
    page: pymupdf.Page, cells: list[LayoutCell], frame: PixelFrame, words: dict[tuple[int, int], list[Word]]
) -> list[LayoutCell]:
    """Each ruled table becomes one ``Table`` cell (Markdown text) where its first block was."""
    all_words = [word for line in words.values() for word in line]
    for table_box, markdown in _tables(page, frame, all_words):
        inside = [cell for cell in cells if _centre_in(cell.bbox, table_box)]
        if not inside:
            continue
        lines = tuple(line for cell in inside for line in cell.lines)
        at = cells.index(inside[0])
        cells = [cell for cell in cells if cell not in inside]
        cells.insert(at, LayoutCell(table_box, "Table", markdown, lines))
    return cells


def _tables(page: pymupdf.Page, frame: PixelFrame, words: list[Word]) -> list[tuple[Box, str]]:
    rules = sum(
        1 for path in page.get_cdrawings() for item in path.get("items", ()) if item[0] in ("l", "re")
    )
    if rules < TABLE_MIN_RULES:
        return []
    try:
        found = page.find_tables(use_layout=False).tables  # no ONNX layout model per page
    except (RuntimeError, ValueError, IndexError):  # table finding is a nicety: the text is already read
        return []
    return [
        (frame.box(table.bbox), _table_markdown(table, frame, words))
        for table in found
        if table.row_count > 1
    ]


def _table_markdown(table: Any, frame: PixelFrame, words: list[Word]) -> str:
    """Rows of cells filled with the words whose centres fall in them.

    PyMuPDF's own ``to_markdown`` extracts text again for every cell (seconds on a dense table);
    the words are already read.
    """
    rows = [[_cell_text(cell, frame, words) for cell in row.cells] for row in table.rows]
    width = max(len(row) for row in rows)
    lines = ["| " + " | ".join(row + [""] * (width - len(row))) + " |" for row in rows]
    return "\n".join([lines[0], "|" + "---|" * width, *lines[1:]])


def _cell_text(cell: Any, frame: PixelFrame, words: list[Word]) -> str:
    if cell is None:  # spanned by its neighbour
        return ""
    box = frame.box(cell)
    return " ".join(word.text for word in words if _centre_in(word.bbox, box)).replace("|", "\\|")


def _centre_in(box: Box, outer: Box) -> bool:
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] <= x <= outer[2] and outer[1] <= y <= outer[3]


def cells_markdown(cells: list[LayoutCell]) -> str:
    return "\n\n".join(_markdown_block(cell) for cell in cells if cell.text)


def _markdown_block(cell: LayoutCell) -> str:
    text = cell.text or ""
    if cell.category == "Title":
        return "# " + " ".join(text.split())
    if cell.category == "Section-header":
        return "## " + " ".join(text.split())
    if cell.category == "List-item":
        if text.lstrip()[:1].isalnum() or text.lstrip().startswith("("):  # numbered: Markdown keeps "1."
            return text.replace("\n", " ")
        return "- " + LIST_ITEM.sub("", text, count=1).replace("\n", " ")
    return text
