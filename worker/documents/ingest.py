"""Register a job and ingest its documents: identify, hash, count pages, carry over old results.

Ingesting is the CPU-queue half of a job (no OCR); it is idempotent, so a
redelivered ingest task returns the pages already created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page
from ocrq.errors import OcrqError, TooLarge
from ocrq.jobs.degraded import EXACT_ENGINES
from ocrq.jobs.store import JobStore
from ocrq.schemas import DocumentStatus, DocumentType, PageStatus
from ocrq.settings import Settings
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.documents.sniff import sniff_type
from ocrq.worker.documents.sources import SourceFile, sha256_of

REUSED_PAGE_FIELDS = (
    "text",
    "markdown",
    "cells",
    "engine",
    "model",
    "width",
    "height",
    "started_at",
    "finished_at",
    "render_ms",
    "ocr_ms",
    "tokens_in",
    "tokens_out",
    "notes",
)


def create_job(
    sessions: sessionmaker[Session],
    sources: list[SourceFile],
    settings: Settings,
    *,
    origin: str = "cli",
    queue: str | None = None,
    reuse: bool = True,
    priority: int = 5,
) -> int:
    """One job row and one queued document row per source file; nothing is opened yet.

    ``queue`` names the page queue for a Celery job (None: embedded); ``reuse``
    False (``--force``) makes its documents ignore earlier results.
    """
    key = settings.result_key()
    with sessions.begin() as session:
        job_settings = settings.result_settings() | {"reuse_results": reuse, "priority": priority}
        job = Job(result_key=key, settings=job_settings, origin=origin, queue=queue)
        job.documents = [
            Document(path=str(s.path), relpath=s.relpath, result_key=key, sha256=s.sha256) for s in sources
        ]
        session.add(job)
        session.flush()
        return job.id


@dataclass(frozen=True, slots=True)
class Inspection:
    sha256: str
    size_bytes: int
    doc_type: DocumentType
    page_count: int


def inspect_source(path: Path, settings: Settings) -> Inspection:
    """Identify a file by its content and count its pages without rendering any."""
    doc_type = sniff_type(path)
    size = path.stat().st_size
    if size > settings.max_file_bytes:
        raise TooLarge(f"file is {size:,} bytes; the limit is {settings.max_file_bytes:,}")
    with open_document(path, doc_type, RenderLimits.from_settings(settings)) as document:
        page_count = document.page_count
    return Inspection(sha256_of(path), size, doc_type, page_count)


def ingest_document(sessions: sessionmaker[Session], settings: Settings, document_id: int) -> list[int]:
    """Create the document's pages (once) and return the ids of those still to OCR."""
    with sessions() as session:
        document = session.get_one(Document, document_id)
        if document.status != DocumentStatus.QUEUED or document.page_count:
            return _queued_page_ids(session, document_id)
        path, reuse = Path(document.path), document.job.settings.get("reuse_results", True)
    try:
        inspection = inspect_source(path, settings)
    except OcrqError as error:
        JobStore(sessions).fail_document(document_id, error)
        return []
    try:
        return _create_pages(sessions, document_id, inspection, reuse)
    except IntegrityError:  # a concurrent delivery of the same ingest created them first
        with sessions() as session:
            return _queued_page_ids(session, document_id)


def _create_pages(
    sessions: sessionmaker[Session], document_id: int, inspection: Inspection, reuse: bool
) -> list[int]:
    with sessions.begin() as session:
        document = session.get_one(Document, document_id)
        document.sha256, document.size_bytes = inspection.sha256, inspection.size_bytes
        document.detected_type, document.page_count = inspection.doc_type, inspection.page_count
        earlier = _earlier_results(session, document) if reuse else {}
        document.pages = [_new_page(i, earlier.get(i)) for i in range(inspection.page_count)]
        document.pages_done = sum(page.status == PageStatus.DONE for page in document.pages)
    if document.pages_done:
        JobStore(sessions).finalize_document(document_id)
    with sessions() as session:
        return _queued_page_ids(session, document_id)


def _new_page(index: int, earlier: Page | None) -> Page:
    if earlier is None:
        return Page(index=index, status=PageStatus.QUEUED)
    page = Page(index=index, status=PageStatus.DONE, reused=True)
    for name in REUSED_PAGE_FIELDS:
        setattr(page, name, getattr(earlier, name))
    return page


def _earlier_results(session: Session, document: Document) -> dict[int, Page]:
    """Done pages of the newest earlier run of the same content under the same settings.

    Degraded pages (read by a fallback engine) are not carried over: running the batch again
    is how a user asks for the primary engine's reading.
    """
    done = session.scalars(
        select(Page)
        .join(Document, Page.document_id == Document.id)
        .join(Job, Document.job_id == Job.id)
        .where(
            Document.sha256 == document.sha256,
            Document.result_key == document.result_key,
            Document.id != document.id,
            Page.status == PageStatus.DONE,
            or_(
                Job.primary_engine.is_(None),
                Page.engine == Job.primary_engine,
                Page.engine.in_(EXACT_ENGINES),
            ),
        )
        .order_by(Document.id.desc())
    )
    found: dict[int, Page] = {}
    for page in done:
        found.setdefault(page.index, page)
    return found


def _queued_page_ids(session: Session, document_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Page.id)
            .where(
                Page.document_id == document_id,
                Page.status != PageStatus.DONE,
                Page.status != PageStatus.FAILED,
            )
            .order_by(Page.index)
        )
    )
