"""DeepSeek-OCR's grounded Markdown: ``<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>`` then text.

Asked to "Convert the document to markdown" with ``<|grounding|>``, DeepSeek-OCR (on vLLM with
``skip_special_tokens=false``, or through its own ``infer``) tags each block with a label and boxes
in a 0-999 frame of the image it was given. Read here into the same cells as dots.ocr's layout
JSON (boxes in page pixels, dots.ocr's category names), so results and Markdown look alike whichever
model read the page; a block without tags is plain text.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ocrq.schemas import LayoutCell
from ocrq.worker.ocr_output.resize import Box, ResizePlan

FRAME = 999
"""DeepSeek-OCR's coordinates run 0..999 across the image it saw."""
_TAG = re.compile(r"<\|ref\|>(.*?)<\|/ref\|><\|det\|>(.*?)<\|/det\|>", re.DOTALL)
_LEFTOVER = re.compile(r"<\|/?(?:ref|det|grounding)\|>")
CATEGORIES = {
    "title": "Title",
    "sub_title": "Section-header",
    "text": "Text",
    "table": "Table",
    "image": "Picture",
    "figure": "Picture",
    "image_caption": "Caption",
    "table_caption": "Caption",
    "figure_title": "Caption",
    "equation": "Formula",
    "formula": "Formula",
    "table_footnote": "Footnote",
    "footnote": "Footnote",
    "header": "Page-header",
    "footer": "Page-footer",
    "list": "List-item",
}


@dataclass(frozen=True, slots=True)
class Grounded:
    cells: list[LayoutCell]
    markdown: str
    """The text with the tags taken out, blocks separated by blank lines."""
    broken_tags: int = 0
    """Tags whose boxes could not be read (a cut or garbled answer)."""


def parse_grounding(raw: str, plan: ResizePlan) -> Grounded:
    """Cells in page pixels and clean Markdown; never raises."""
    matches = list(_TAG.finditer(raw))
    cells: list[LayoutCell] = []
    broken = 0
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(raw)
        text = _clean(raw[match.end() : end])
        box = _union(match.group(2))
        if box is None:
            broken += 1
            continue
        category = CATEGORIES.get(match.group(1).strip().lower(), "Text")
        bbox = plan.to_page(_to_model_frame(box, plan.target))
        cells.append(LayoutCell(bbox, category, None if category == "Picture" and not text else text))
    head = _clean(raw[: matches[0].start()]) if matches else _clean(raw)
    blocks = [head] + [cell.text or "" for cell in cells]
    return Grounded(cells, "\n\n".join(block for block in blocks if block), broken)


def _clean(text: str) -> str:
    return _LEFTOVER.sub("", text).strip()


def _union(coordinates: str) -> Box | None:
    """The boxes of one tag (``[[x1, y1, x2, y2], ...]``) as one enclosing box; None if unreadable."""
    try:
        boxes = ast.literal_eval(coordinates.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(boxes, list | tuple) and len(boxes) == 4 and all(isinstance(v, int | float) for v in boxes):
        boxes = [boxes]
    try:
        x1s, y1s, x2s, y2s = zip(*(tuple(map(float, box)) for box in boxes), strict=True)
    except (TypeError, ValueError):
        return None
    return (int(min(x1s)), int(min(y1s)), int(max(x2s)), int(max(y2s)))


def _to_model_frame(box: Box, size: tuple[int, int]) -> Box:
    width, height = size
    x1, y1, x2, y2 = box
    return (
        round(x1 / FRAME * width),
        round(y1 / FRAME * height),
        round(x2 / FRAME * width),
        round(y2 / FRAME * height),
    )
