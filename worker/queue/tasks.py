"""Celery tasks: thin shells that carry ids into the same code the embedded runner uses.

Each worker process builds its database engine and (on the first page) its
engine chain lazily, after the fork, and keeps them for later tasks.
"""

from __future__ import annotations

import threading
from functools import cached_property

from celery import Task, current_app, shared_task
from celery.signals import worker_ready
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.jobs.store import JobStore
from ocrq.settings import Settings, build_settings
from ocrq.worker.documents.ingest import ingest_document
from ocrq.worker.pipeline import PageOutcome, PagePipeline, pipeline_for
from ocrq.worker.queue.celery_app import TASK_INBOX, TASK_INGEST, TASK_PAGE, TASK_RECONCILE
from ocrq.worker.queue.dispatch import Dispatcher

JOBS_REMEMBERED = 256


class WorkerContext:
    """What one worker process shares across its tasks and threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pipelines: dict[str, PagePipeline] = {}
        self._jobs: dict[int, Settings] = {}

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        return Dispatcher(current_app, self.sessions, self.settings)

    @cached_property
    def store(self) -> JobStore:
        return JobStore(self.sessions, lease_seconds=self.settings.page_time_limit)

    def pipeline_for_job(self, job_id: int) -> PagePipeline:
        """One pipeline per distinct job settings (engines, DPI, model, prompt), built on first use.

        Page threads arrive together; only one may build a pipeline's engines.
        Jobs rarely differ, so pipelines are kept for the process's life.
        """
        settings = self._job_settings(job_id)
        key = settings.result_key()
        with self._lock:
            if key not in self._pipelines:
                self._pipelines[key] = pipeline_for(settings, self.store, prepare=True)
            return self._pipelines[key]

    def job_of_page(self, page_id: int) -> int:
        with self.sessions() as session:
            return session.scalars(
                select(Document.job_id).join(Page, Page.document_id == Document.id).where(Page.id == page_id)
            ).one()

    def _job_settings(self, job_id: int) -> Settings:
        with self._lock:
            if job_id in self._jobs:
                return self._jobs[job_id]
        with self.sessions() as session:
            recorded = session.scalar(select(Job.settings).where(Job.id == job_id)) or {}
        with self._lock:
            if len(self._jobs) > JOBS_REMEMBERED:
                self._jobs.clear()
            return self._jobs.setdefault(job_id, self.settings.for_job(recorded))


_context_lock = threading.Lock()
_context: WorkerContext | None = None


def context() -> WorkerContext:
    global _context
    with _context_lock:
        if _context is None:
            settings = getattr(current_app, "ocrq_settings", None) or build_settings()
            _context = WorkerContext(settings)
        return _context


@worker_ready.connect
def start_page_preparation(sender: object = None, **_: object) -> None:
    """The page preparation pool spawns beside the worker's start, not in its first pages' time."""
    from ocrq.worker.prepare.hook import start_early

    consumer = getattr(sender, "task_consumer", None)
    queues = {queue.name for queue in getattr(consumer, "queues", [])}
    settings = context().settings
    threading.Thread(target=start_early, args=(settings, queues), name="ocrq-prepare", daemon=True).start()


@shared_task(name=TASK_INGEST, ignore_result=True)
def ingest_document_task(document_id: int) -> int:
    """Identify and count a document's pages, then queue those still to OCR."""
    ctx = context()
    page_ids = ingest_document(ctx.sessions, ctx.settings, document_id)
    ctx.dispatcher.enqueue_pages(page_ids)
    return len(page_ids)


@shared_task(name=TASK_PAGE, bind=True, ignore_result=True)
def ocr_page_task(self: Task, page_id: int, job_id: int | None = None) -> str | None:
    """OCR one page; while retries last, a page whose engines all failed retryably comes back later."""
    ctx = context()
    retries_left = self.request.retries < ctx.settings.page_retries
    pipeline = ctx.pipeline_for_job(job_id or ctx.job_of_page(page_id))
    outcome: PageOutcome = pipeline.process(page_id, allow_retry=retries_left)
    if outcome.retry:
        raise self.retry(countdown=ctx.settings.page_retry_backoff_seconds * 2**self.request.retries)
    return outcome.status


@shared_task(name=TASK_RECONCILE, ignore_result=True)
def reconcile_task() -> dict[str, int]:
    from ocrq.worker.queue.reconcile import run_reconcile

    ctx = context()
    return run_reconcile(ctx.sessions, ctx.settings, ctx.dispatcher)


@shared_task(name=TASK_INBOX, ignore_result=True)
def ingest_inbox_task() -> int | None:
    from ocrq.worker.documents.inbox import ingest_inbox

    ctx = context()
    return ingest_inbox(ctx.sessions, ctx.settings, ctx.dispatcher.submit)
