"""Layout cells to blocks, lines and words with boxes: the one conversion every result format reads.

Engines differ in what they locate. Tesseract (and a PDF's own text layer) measure every word; a
vision-language model like dots.ocr gives a box per block whose text is Markdown, an HTML table or
LaTeX. A cell that carries ``lines`` (or a flat ``words`` list) is used as measured; any other cell
is stripped to plain text, split into its printed lines, and each line and word gets a box
estimated by its share of the characters: lines stack evenly down the block, and a line is as
wide as its share of the block's longest line, since text is set flush left far more often than
not. Boxes are in page pixels, the frame the page was OCRed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ocrq.worker.results.plain_markup import plain_text

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in page pixels."""


@dataclass(frozen=True, slots=True)
class PlacedWord:
    text: str
    box: Box


@dataclass(frozen=True, slots=True)
class PlacedLine:
    box: Box
    words: tuple[PlacedWord, ...]
    angle: int = 0
    """Counter-clockwise turn of the text: 90 and 270 are sideways lines, boxes stay axis-aligned."""

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)


@dataclass(frozen=True, slots=True)
class PlacedBlock:
    order: int
    """1-based reading order on the page, as the engine gave the cells."""
    category: str
    box: Box
    lines: tuple[PlacedLine, ...]
    measured: bool
    """Word boxes came from the engine; False means they were estimated here."""

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclass(frozen=True, slots=True)
class PageWords:
    index: int
    width: int
    height: int
    blocks: tuple[PlacedBlock, ...]

    @property
    def text(self) -> str:
        """The page in reading order: lines on their own line, blocks apart by a blank line."""
        return "\n\n".join(block.text for block in self.blocks if block.lines)


def page_words(index: int, width: int, height: int, cells: Iterable[Mapping[str, Any]]) -> PageWords:
    """A page's cells (as stored in the database and the JSON) placed word by word."""
    blocks = (cell_block(order, cell) for order, cell in enumerate(cells, 1))
    return PageWords(index, width, height, tuple(block for block in blocks if block is not None))


def cell_block(order: int, cell: Mapping[str, Any]) -> PlacedBlock | None:
    """One cell as a block; None for a cell without a usable box."""
    box = _box(cell.get("bbox"))
    if box is None:
        return None
    category = str(cell.get("category") or "Text")
    measured = _measured_lines(cell)
    if measured:
        return PlacedBlock(order, category, box, measured, measured=True)
    text = plain_text(category, cell.get("text"))
    return PlacedBlock(order, category, box, estimate_lines(box, text), measured=False)


def estimate_lines(box: Box, text: str) -> tuple[PlacedLine, ...]:
    """Printed lines stacked evenly in the block, each as wide as its share of the longest."""
    rows = [row.split() for row in text.splitlines()]
    rows = [row for row in rows if row]
    if not rows:
        return ()
    x1, y1, x2, y2 = box
    pitch = (y2 - y1) / len(rows)
    longest = max(_chars(row) for row in rows)
    lines = []
    for number, row in enumerate(rows):
        right = x1 + (x2 - x1) * _chars(row) / longest
        line_box = (x1, y1 + number * pitch, right, y1 + (number + 1) * pitch)
        lines.append(PlacedLine(line_box, split_words(line_box, row)))
    return tuple(lines)


def split_words(box: Box, words: Sequence[str]) -> tuple[PlacedWord, ...]:
    """Words across a line by character share, a space's width apart."""
    x1, y1, x2, y2 = box
    per_char = (x2 - x1) / _chars(words)
    placed, left = [], x1
    for word in words:
        right = left + len(word) * per_char
        placed.append(PlacedWord(word, (left, y1, right, y2)))
        left = right + per_char
    return tuple(placed)


def _chars(words: Sequence[str]) -> int:
    """Characters of the words with one space between each."""
    return sum(len(word) for word in words) + len(words) - 1


def _measured_lines(cell: Mapping[str, Any]) -> tuple[PlacedLine, ...]:
    """An engine's own lines (``lines``), or its flat ``words`` grouped into lines by position."""
    lines = cell.get("lines")
    if isinstance(lines, list) and lines:
        placed = (_line(line.get("words"), line.get("angle")) for line in lines if isinstance(line, Mapping))
        return tuple(line for line in placed if line is not None)
    words = cell.get("words")
    if isinstance(words, list) and words:
        return tuple(line for line in map(_line, group_into_lines(words)) if line is not None)
    return ()


def group_into_lines(words: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Words in reading order start a new line when they no longer overlap the line vertically."""
    lines: list[list[Mapping[str, Any]]] = []
    bottom = -1.0
    for word in words:
        box = _box(word.get("bbox"))
        if box is None:
            continue
        centre = (box[1] + box[3]) / 2
        if not lines or centre > bottom:
            lines.append([])
        lines[-1].append(word)
        bottom = box[3] if centre > bottom else max(bottom, box[3])
    return lines


def _line(words: object, angle: object = 0) -> PlacedLine | None:
    if not isinstance(words, list):
        return None
    placed = []
    for word in words:
        box, text = _box(word.get("bbox")), str(word.get("text") or "").strip()
        if box is not None and text:
            placed.append(PlacedWord(" ".join(text.split()), box))
    if not placed:
        return None
    boxes = [word.box for word in placed]
    union = (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
    return PlacedLine(union, tuple(placed), angle if angle in (90, 180, 270) else 0)


def _box(value: object) -> Box | None:
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None
