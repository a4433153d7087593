"""Parse dots.ocr's layout JSON, repairing what a truncated or looping generation leaves behind.

Follows dots.ocr's ``OutputCleaner`` in effect, not in code: keep every complete cell, drop the
partial last one, salvage a lone incomplete cell, then drop duplicates (the same cell again,
a category+text pair five times or more, a bbox seen before). Cells come back in the model's
frame; :mod:`ocrq.worker.ocr_output.resize` maps them to the page.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ocrq.schemas import LAYOUT_CATEGORIES, LayoutCell

REPEATS_TO_DROP = 5
"""A category+text pair seen this often is a loop, not content (dots.ocr's threshold)."""
SALVAGE_TEXT_CHARS = 10_000
_CELL_START = re.compile(r'\{\s*"bbox"\s*:')
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_CATEGORY_BY_LOWER = {name.lower(): name for name in LAYOUT_CATEGORIES}
_BBOX = re.compile(r'"bbox"\s*:\s*\[\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\]')
_CATEGORY = re.compile(r'"category"\s*:\s*"([^"]*)"')
_TEXT_START = re.compile(r'"text"\s*:\s*"')


@dataclass(slots=True)
class LayoutParse:
    """Cells in the model frame plus what it took to get them."""

    cells: list[LayoutCell] = field(default_factory=list)
    valid_json: bool = False
    """The output parsed as JSON as it came: no repair needed."""
    dropped: int = 0
    """Cells lost to repair: the partial last cell, invalid cells, duplicates."""

    @property
    def repaired(self) -> bool:
        return not self.valid_json or self.dropped > 0


def parse_layout(raw: str) -> LayoutParse:
    """Cells from dots.ocr output; never raises, an unreadable answer just yields no cells."""
    text = _FENCE.sub("", raw.strip())
    objects, valid = _decode(text)
    result = LayoutParse(valid_json=valid)
    for obj in objects:
        cell = _cell(obj)
        if cell is None:
            result.dropped += 1
        else:
            result.cells.append(cell)
    before = len(result.cells)
    result.cells = deduplicate(result.cells)
    result.dropped += before - len(result.cells)
    return result


def _decode(text: str) -> tuple[list[Any], bool]:
    try:
        value = json.loads(text)
    except ValueError:
        return _scan_cells(text), False
    if isinstance(value, dict):
        return [value], True
    return (value, True) if isinstance(value, list) else ([], False)


def _scan_cells(text: str) -> list[Any]:
    """Every complete ``{"bbox": ...}`` object wherever it sits; a partial one at the end is lost."""
    decoder, found, partial, consumed = json.JSONDecoder(), [], None, 0
    for match in _CELL_START.finditer(text):
        if match.start() < consumed:
            continue  # inside a cell already decoded (a text that quotes JSON)
        try:
            obj, consumed = decoder.raw_decode(text, match.start())
        except ValueError:
            partial = match.start()
            continue
        found.append(obj)
    if not found and partial is not None:
        salvaged = _salvage(text[partial:])
        return [salvaged] if salvaged else [None]
    return found + ([None] if partial is not None else [])


def _salvage(fragment: str) -> dict[str, Any] | None:
    """A lone cut-off cell keeps its bbox, category and first text, like dots.ocr's cleaner."""
    bbox, category = _BBOX.search(fragment), _CATEGORY.search(fragment)
    if not bbox or not category:
        return None
    cell: dict[str, Any] = {"bbox": [float(v) for v in bbox.groups()], "category": category.group(1)}
    text_start = _TEXT_START.search(fragment)
    if text_start:
        cell["text"] = _partial_string(fragment[text_start.end() :][:SALVAGE_TEXT_CHARS])
    return cell


def _partial_string(body: str) -> str:
    """Decode a JSON string body that may stop anywhere, even inside an escape."""
    closed = re.match(r'((?:[^"\\]|\\.)*)"', body)
    content = closed.group(1) if closed else body
    for cut in range(len(content), max(len(content) - 6, -1), -1):
        try:
            return json.loads(f'"{content[:cut]}"')
        except ValueError:
            continue
    return ""


def _cell(obj: object) -> LayoutCell | None:
    if not isinstance(obj, dict):
        return None
    box = _box(obj.get("bbox"))
    category = normalise_category(obj.get("category"))
    if box is None or category is None:
        return None
    text = obj.get("text")
    if category == "Picture" or not isinstance(text, str):
        return LayoutCell(box, category)
    return LayoutCell(box, category, text)


def _box(value: object) -> tuple[int, int, int, int] | None:
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    try:
        x1, y1, x2, y2 = (round(float(v)) for v in value)
    except (TypeError, ValueError):
        return None
    box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
    return box if box[2] > box[0] and box[3] > box[1] else None


def normalise_category(value: object) -> str | None:
    """One of the 11 categories, matched case-insensitively; anything else reads as Text."""
    if not isinstance(value, str) or not value.strip():
        return None
    return _CATEGORY_BY_LOWER.get(value.strip().lower().replace("_", "-"), "Text")


def deduplicate(cells: list[LayoutCell]) -> list[LayoutCell]:
    """Drop repeats the way loops produce them, keeping each first occurrence."""
    pair_counts: dict[tuple[str, str | None], int] = {}
    for cell in cells:
        key = (cell.category, cell.text)
        pair_counts[key] = pair_counts.get(key, 0) + 1
    kept: list[LayoutCell] = []
    seen_boxes: set[tuple[int, int, int, int]] = set()
    seen_looping: set[tuple[str, str | None]] = set()
    for cell in cells:
        key = (cell.category, cell.text)
        if cell.bbox in seen_boxes or key in seen_looping:
            continue
        if pair_counts[key] >= REPEATS_TO_DROP:
            seen_looping.add(key)
        seen_boxes.add(cell.bbox)
        kept.append(cell)
    return kept
