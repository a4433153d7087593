"""What a submission must pass before it becomes a job: the backlog limit and the page cap.

Both are checked here, at the door, because refusing late (after a worker has
ingested half a job) is what makes a queue feel broken.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Page
from ocrq.errors import OcrqError, Overloaded, TooLarge
from ocrq.schemas import DocumentStatus, PageStatus
from ocrq.settings import Settings
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.documents.sniff import sniff_type
from ocrq.worker.documents.sources import SourceFile


def backlog(sessions: sessionmaker[Session]) -> int:
    """Unfinished pages, plus documents not ingested yet (their pages are not counted yet)."""
    with sessions() as session:
        pages = session.scalar(
            select(func.count())
            .select_from(Page)
            .where(Page.status.in_((PageStatus.QUEUED, PageStatus.RUNNING)))
        )
        documents = session.scalar(
            select(func.count())
            .select_from(Document)
            .where(Document.status == DocumentStatus.QUEUED, Document.page_count == 0)
        )
    return (pages or 0) + (documents or 0)


def check_backlog(sessions: sessionmaker[Session], settings: Settings) -> None:
    limit = settings.api_backlog_limit
    if limit and (waiting := backlog(sessions)) >= limit:
        raise Overloaded(f"{waiting} pages and documents are waiting (limit {limit}); try again later")


def count_pages(source: SourceFile, limits: RenderLimits) -> int:
    """Pages as the file's own header counts them; 0 for a file that will fail on its own later.

    Nothing is rendered: PyMuPDF and Pillow read the page tree or frame count only.
    """
    try:
        with open_document(source.path, sniff_type(source.path), limits) as document:
            return document.page_count
    except OcrqError:
        return 0


def check_page_cap(sources: list[SourceFile], settings: Settings) -> int:
    """Total pages of the submission; :class:`TooLarge` over ``OCRQ_API_MAX_PAGES_PER_JOB``."""
    limits = RenderLimits.from_settings(settings)
    cap, total = settings.api_max_pages_per_job, 0
    for source in sources:
        total += count_pages(source, limits)
        if total > cap:
            raise TooLarge(f"the job has more than {cap:,} pages; split it")
    return total
