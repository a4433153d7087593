"""What a submission must pass before it becomes a job: the backlog limit, the page cap, the key's quota.

Both are checked here, at the door, because refusing late (after a worker has
ingested half a job) is what makes a queue feel broken.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page
from ocrq.errors import OcrqError, Overloaded, QuotaExceeded, TooLarge
from ocrq.jobs.access import Caller
from ocrq.jobs.store import FINISHED_DOCUMENT
from ocrq.schemas import DocumentStatus, JobStatus, PageStatus
from ocrq.settings import Settings
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.documents.sniff import sniff_type
from ocrq.worker.documents.sources import SourceFile


def backlog(sessions: sessionmaker[Session]) -> int:
    """Pages that can still run, plus documents not ingested yet (their pages are not counted yet).

    Only open jobs count: a job that failed as a whole (no engine), was
    cancelled or interrupted leaves ``queued`` rows behind that no worker will
    ever take, and they must not hold the door shut for everyone.
    """
    open_job = (Job.finished_at.is_(None), Job.status != JobStatus.CANCELLED)
    with sessions() as session:
        pages = session.scalar(
            select(func.count())
            .select_from(Page)
            .join(Document, Page.document_id == Document.id)
            .join(Job, Document.job_id == Job.id)
            .where(Page.status.in_((PageStatus.QUEUED, PageStatus.RUNNING)), *open_job)
            .where(Document.status.not_in(FINISHED_DOCUMENT))
        )
        documents = session.scalar(
            select(func.count())
            .select_from(Document)
            .join(Job, Document.job_id == Job.id)
            .where(Document.status == DocumentStatus.QUEUED, Document.page_count == 0, *open_job)
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


def key_usage(sessions: sessionmaker[Session], key_id: int) -> int:
    """Pages the key's unfinished jobs declared at submission and have not finished yet."""
    finished = (
        select(Document.job_id, func.sum(Document.pages_done + Document.pages_failed).label("pages"))
        .group_by(Document.job_id)
        .subquery()
    )
    with sessions() as session:
        rows = session.execute(
            select(Job.declared_pages, func.coalesce(finished.c.pages, 0))
            .outerjoin(finished, finished.c.job_id == Job.id)
            .where(Job.api_key_id == key_id, Job.finished_at.is_(None))
        )
        return sum(max(0, (declared or 0) - done) for declared, done in rows)


class KeyQuota:
    """``OCRQ_API_KEY_MAX_QUEUED_PAGES`` per key: one busy tenant gets 429, the others keep submitting.

    Check and submit run under one lock per key (in this process), so two
    submissions by the same key cannot both squeeze under the quota.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def admit(self, caller: Caller, pages: int, settings: Settings) -> Iterator[None]:
        if caller.key_id is None or not settings.api_key_max_queued_pages:
            yield
            return
        with self._lock(caller.key_id):
            self._check(caller.key_id, pages, settings.api_key_max_queued_pages)
            yield

    def _lock(self, key_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key_id, threading.Lock())

    def _check(self, key_id: int, pages: int, limit: int) -> None:
        if pages > limit:
            raise TooLarge(f"the job has {pages:,} pages; a key may have at most {limit:,} waiting: split it")
        used = key_usage(self.sessions, key_id)
        if used + pages > limit:
            raise QuotaExceeded(
                f"this key has {used:,} pages waiting; {pages:,} more would pass its quota of {limit:,}. "
                "Try again when some are done"
            )
