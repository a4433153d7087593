"""Celery tasks: thin shells that carry ids into the same code the embedded runner uses.

Each worker process builds its database engine and (on the first page) its
engine chain lazily, after the fork, and keeps them for later tasks.
"""

from __future__ import annotations

import threading
from functools import cached_property

from celery import Task, current_app, shared_task
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import Settings, build_settings
from worker.celery_app import TASK_INBOX, TASK_INGEST, TASK_PAGE, TASK_RECONCILE
from worker.dispatch import Dispatcher
from worker.engines.selection import build_chain
from worker.ingest import ingest_document
from worker.job_store import JobStore
from worker.pipeline import PageOutcome, PagePipeline
from worker.render import RenderLimits


class WorkerContext:
    """What one worker process shares across its tasks and threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        return Dispatcher(current_app, self.sessions, self.settings)

    @property
    def pipeline(self) -> PagePipeline:
        with self._lock:  # page threads arrive together; only one may build the engines
            if not hasattr(self, "_pipeline"):
                store = JobStore(self.sessions, lease_seconds=self.settings.page_time_limit)
                limits = RenderLimits.from_settings(self.settings)
                self._pipeline = PagePipeline(store, build_chain(self.settings), limits)
            return self._pipeline


_context_lock = threading.Lock()
_context: WorkerContext | None = None


def context() -> WorkerContext:
    global _context
    with _context_lock:
        if _context is None:
            settings = getattr(current_app, "ocrq_settings", None) or build_settings()
            _context = WorkerContext(settings)
        return _context


@shared_task(name=TASK_INGEST, ignore_result=True)
def ingest_document_task(document_id: int) -> int:
    """Identify and count a document's pages, then queue those still to OCR."""
    ctx = context()
    page_ids = ingest_document(ctx.sessions, ctx.settings, document_id)
    ctx.dispatcher.enqueue_pages(page_ids)
    return len(page_ids)


@shared_task(name=TASK_PAGE, bind=True, ignore_result=True)
def ocr_page_task(self: Task, page_id: int) -> str | None:
    """OCR one page; while retries last, a page whose engines all failed retryably comes back later."""
    ctx = context()
    retries_left = self.request.retries < ctx.settings.page_retries
    outcome: PageOutcome = ctx.pipeline.process(page_id, allow_retry=retries_left)
    if outcome.retry:
        raise self.retry(countdown=ctx.settings.page_retry_backoff_seconds * 2**self.request.retries)
    return outcome.status


@shared_task(name=TASK_RECONCILE, ignore_result=True)
def reconcile_task() -> dict[str, int]:
    from worker.reconcile import run_reconcile

    ctx = context()
    return run_reconcile(ctx.sessions, ctx.settings, ctx.dispatcher)


@shared_task(name=TASK_INBOX, ignore_result=True)
def ingest_inbox_task() -> int | None:
    from worker.inbox import ingest_inbox

    ctx = context()
    return ingest_inbox(ctx.sessions, ctx.settings, ctx.dispatcher.submit)
