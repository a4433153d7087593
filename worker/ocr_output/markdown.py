"""Layout cells as Markdown and as plain text.

Tables stay HTML (Markdown tables cannot hold merged cells), formulas become ``$$`` blocks, and
pictures become references carrying their page-pixel bbox instead of dots.ocr's inline base64
crops, which would make a page's Markdown megabytes long.
"""

from __future__ import annotations

import html
import re

from ocrq.schemas import LayoutCell

PAGE_FURNITURE = frozenset({"Page-header", "Page-footer"})
_LATEX_PREAMBLE = re.compile(r"\\documentclass(\[[^\]]*\])?\{[^}]*\}|\\usepackage(\[[^\]]*\])?\{[^}]*\}")
_DOCUMENT_ENV = re.compile(r"\\(begin|end)\{document\}")
_WRAPPERS = (("$$", "$$"), ("\\[", "\\]"), ("$", "$"))
_ROW_END = re.compile(r"</tr\s*>", re.IGNORECASE)
_CELL_END = re.compile(r"</t[dh]\s*>", re.IGNORECASE)
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


def formula_markdown(text: str) -> str:
    """A display-math block whatever delimiters (or LaTeX preamble) the model wrapped it in."""
    body = _DOCUMENT_ENV.sub("", _LATEX_PREAMBLE.sub("", text)).strip()
    for opening, closing in _WRAPPERS:
        if body.startswith(opening) and body.endswith(closing) and len(body) > len(opening) + len(closing):
            body = body[len(opening) : -len(closing)].strip()
            break
    return f"$$\n{body}\n$$"


def picture_reference(cell: LayoutCell, index: int) -> str:
    """A link a reader can resolve by cropping the page at the bbox (the JSON has the same box)."""
    x1, y1, x2, y2 = cell.bbox
    return f"![Picture {index}](#bbox={x1},{y1},{x2},{y2})"


def _clean_text(text: str) -> str:
    """dots.ocr sometimes wraps inline math in backticks: `$x$` → $x$."""
    return re.sub(r"`(\$[^`]*\$)`", r"\1", text.strip())


def cell_markdown(cell: LayoutCell, index: int) -> str:
    if cell.category == "Picture":
        return picture_reference(cell, index)
    if cell.category == "Formula" and cell.text:
        return formula_markdown(cell.text)
    if cell.category == "Table":
        return (cell.text or "").strip()
    return _clean_text(cell.text or "")


def _kept(cells: list[LayoutCell], drop_page_furniture: bool) -> list[LayoutCell]:
    if not drop_page_furniture:
        return cells
    return [cell for cell in cells if cell.category not in PAGE_FURNITURE]


def cells_markdown(cells: list[LayoutCell], drop_page_furniture: bool = False) -> str:
    """The page in reading order, blocks separated by blank lines."""
    blocks = (cell_markdown(cell, i) for i, cell in enumerate(_kept(cells, drop_page_furniture), 1))
    return "\n\n".join(block for block in blocks if block)


def table_text(table_html: str) -> str:
    """An HTML table as tab-separated lines, for the plain-text output."""
    text = _CELL_END.sub("\t", _ROW_END.sub("\n", _BREAK.sub(" ", table_html)))
    lines = (line.rstrip("\t ") for line in html.unescape(_TAG.sub("", text)).splitlines())
    return "\n".join(line for line in lines if line.strip())


def cell_text(cell: LayoutCell) -> str:
    if cell.category == "Picture" or not cell.text:
        return ""
    if cell.category == "Table":
        return table_text(cell.text)
    return cell.text.strip()


def cells_text(cells: list[LayoutCell], drop_page_furniture: bool = False) -> str:
    """Plain text: what a search index or a diff wants, without Markdown or HTML."""
    texts = (cell_text(cell) for cell in _kept(cells, drop_page_furniture))
    return "\n\n".join(text for text in texts if text)
