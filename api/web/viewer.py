"""One page as the viewer shows it: its picture, its cells in page pixels, text, Markdown, attempts.

Cells are stored in the pixels of the image the engine read (after any downscaling, before any
rotation the engine did itself), and the picture is a render of that same page. The viewer draws
both in one SVG whose viewBox is the page's pixel size, so the boxes land on the text whatever
size the picture is drawn at, on a downscaled page as on a full one.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.queries import document_public, get_page, get_visible_document
from ocrq.api.rest.schemas import DocumentPublic, PagePublic
from ocrq.db.models import Attempt, Page
from ocrq.errors import InputError, OutputError, ResourceNotFound
from ocrq.jobs.access import Caller
from ocrq.redaction import hide_server_paths
from ocrq.schemas import DocumentType
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.results.words import cell_block

PICTURE_LONG_SIDE = 1400
"""Pixels on the picture's long side: sharp on a laptop, a few hundred kB as JPEG."""
_CATEGORY_CLASS = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class ViewCell:
    order: int
    category: str
    box: tuple[float, float, float, float]
    text: str

    @property
    def css(self) -> str:
        """A class name per category (colours live in the stylesheet: no inline styles under the CSP)."""
        return "cat-" + _CATEGORY_CLASS.sub("-", self.category.lower()).strip("-")

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True, slots=True)
class PageView:
    document: DocumentPublic
    page: PagePublic
    cells: list[ViewCell]
    attempts: list[dict[str, Any]]
    source_removed: bool = False
    """The upload was deleted after OCRQ_API_UPLOAD_RETENTION_HOURS: cells and text, but no picture."""


def page_view(sessions: sessionmaker[Session], caller: Caller, document_id: int, number: int) -> PageView:
    page = get_page(sessions, caller, document_id, number)  # 404 for unknown or another tenant's
    with sessions() as session:
        document = get_visible_document(session, caller, document_id)
        attempts = _attempts(session, document_id, page.index, document)
        public = document_public(document)
        removed = document.job.sources_removed_at is not None
    return PageView(public, page, view_cells(page.cells), attempts, removed)


def view_cells(cells: list[dict[str, Any]]) -> list[ViewCell]:
    shown = []
    for order, cell in enumerate(cells, 1):
        block = cell_block(order, cell)
        if block is not None:
            text = block.text or str(cell.get("text") or "")
            shown.append(ViewCell(order, block.category, block.box, text))
    return shown


def _attempts(session: Session, document_id: int, index: int, document: Any) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Attempt)
        .join(Page, Attempt.page_id == Page.id)
        .where(Page.document_id == document_id, Page.index == index)
        .order_by(Attempt.id)
    )
    return [
        {
            "engine": a.engine,
            "model": a.model,
            "started_at": a.started_at,
            "duration_ms": a.duration_ms,
            "outcome": a.outcome,
            "error": hide_server_paths(a.error_message, document.path, document.relpath),
            "code": a.error_code,
        }
        for a in rows
    ]


def page_picture_jpeg(
    sessions: sessionmaker[Session], caller: Caller, document_id: int, number: int
) -> bytes:
    """The page rendered again from its source, in colour, at the page's own proportions."""
    with sessions() as session:
        document = get_visible_document(session, caller, document_id)
        page = session.scalar(select(Page).where(Page.document_id == document_id, Page.index == number - 1))
        if page is None or not document.detected_type:
            raise ResourceNotFound(f"no page {number} in document {document_id}")
        source, kind, name = Path(document.path), DocumentType(document.detected_type), document.relpath
        width, height = page.width or PICTURE_LONG_SIDE, page.height or PICTURE_LONG_SIDE
    try:
        with open_document(source, kind, _limits(width, height)) as opened:
            image = opened.render(number - 1, "RGB")
    except InputError as error:
        message = hide_server_paths(error.message, str(source), name) or error.message
        raise OutputError(f"{name} could not be read again: {message}") from error
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _limits(width: int, height: int) -> RenderLimits:
    long, short = max(width, height, 1), min(width, height)
    pixels = max(10_000, round(PICTURE_LONG_SIDE * PICTURE_LONG_SIDE * max(short, 1) / long))
    return RenderLimits(dpi=300, max_page_pixels=pixels, max_source_pixels=200_000_000, max_pages=1_000_000)
