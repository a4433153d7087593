"""Value types shared by the worker and the API.

Plain dataclasses and enums: they cross the engine seam and the output files,
so they carry no database or framework behaviour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """An embedded run stopped by the user (Ctrl-C); running the same command again resumes it."""


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PageStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PromptMode(StrEnum):
    """What the engine is asked for; names follow dots.ocr's prompt dictionary."""

    LAYOUT_ALL = "layout_all"
    LAYOUT_ONLY = "layout_only"
    TEXT_ONLY = "text_only"
    GROUNDING = "grounding"


class DocumentType(StrEnum):
    PDF = "pdf"
    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"
    WEBP = "webp"
    BMP = "bmp"
    GIF = "gif"


LAYOUT_CATEGORIES = (
    "Caption",
    "Footnote",
    "Formula",
    "List-item",
    "Page-footer",
    "Page-header",
    "Picture",
    "Section-header",
    "Table",
    "Text",
    "Title",
)


@dataclass(frozen=True, slots=True)
class Word:
    """A word an engine located itself (Tesseract, a PDF's own text), in page pixels."""

    bbox: tuple[int, int, int, int]
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"bbox": list(self.bbox), "text": self.text}


@dataclass(frozen=True, slots=True)
class TextLine:
    """A line of measured words; engines that only know blocks (VLMs) leave cells without lines."""

    bbox: tuple[int, int, int, int]
    words: tuple[Word, ...]
    angle: int = 0
    """Counter-clockwise turn of the text in the page image: 90 reads bottom to top (a sideways scan)."""

    def as_dict(self) -> dict[str, Any]:
        line: dict[str, Any] = {"bbox": list(self.bbox), "words": [word.as_dict() for word in self.words]}
        return line | ({"angle": self.angle} if self.angle else {})


@dataclass(frozen=True, slots=True)
class LayoutCell:
    """One layout element in dots.ocr's schema; ``bbox`` is in page pixels.

    ``lines`` holds measured line and word boxes when the engine has them; the result
    formats (searchable PDF, ALTO) estimate them from ``text`` otherwise
    (:mod:`ocrq.worker.results.words`).
    """

    bbox: tuple[int, int, int, int]
    category: str
    text: str | None = None
    lines: tuple[TextLine, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        cell: dict[str, Any] = {"bbox": list(self.bbox), "category": self.category}
        if self.text is not None:
            cell["text"] = self.text
        if self.lines:
            cell["lines"] = [line.as_dict() for line in self.lines]
        return cell


@dataclass(frozen=True, slots=True)
class PageTask:
    """What to do with one page image."""

    mode: PromptMode = PromptMode.LAYOUT_ALL
    bbox: tuple[int, int, int, int] | None = None
    """Region of interest for ``GROUNDING``."""


@dataclass(frozen=True, slots=True)
class PageNote:
    """Something the user should know about how a page was read (stable ``code``).

    A ``warning`` note means content may be missing (a damaged page drawn in part):
    its document ends ``partial`` so the loss is never silent. Other notes record
    decisions (which text layer was trusted and why, a page read in tiles).
    """

    code: str
    message: str
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "warning": self.warning}


@dataclass(slots=True)
class PageResult:
    """An engine's answer for one page."""

    text: str
    markdown: str
    engine: str
    model: str
    cells: list[LayoutCell] = field(default_factory=list)
    tokens_in: int | None = None
    tokens_out: int | None = None
    ocr_ms: float = 0.0
    notes: list[PageNote] = field(default_factory=list)

    def notes_json(self) -> list[dict[str, Any]]:
        return [note.as_dict() for note in self.notes]

    def cells_json(self) -> list[dict[str, Any]]:
        return [cell.as_dict() for cell in self.cells]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"cells": self.cells_json(), "notes": self.notes_json()}
