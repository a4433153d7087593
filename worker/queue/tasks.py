"""Celery tasks: thin shells that carry ids into the same code the embedded runner uses.

Each worker process builds its database engine and (on the first page) its
engine chain lazily, after the fork, and keeps them for later tasks.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property

import structlog
from celery import Task, current_app, shared_task
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutting_down
from sqlalchemy import Engine, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.jobs.degraded import record_primary_engine
from ocrq.jobs.store import JobStore
from ocrq.logs import log_context
from ocrq.settings import Settings, build_settings
from ocrq.worker.documents.ingest import ingest_document
from ocrq.worker.pipeline import PageOutcome, PagePipeline, pipeline_for
from ocrq.worker.queue.celery_app import TASK_INBOX, TASK_INGEST, TASK_PAGE, TASK_RECONCILE, TASK_REDO
from ocrq.worker.queue.dispatch import Dispatcher
from ocrq.worker.queue.leases import LeaseHeartbeat

JOBS_REMEMBERED = 256
DB_AWAY_WAIT_S = 30.0
DB_AWAY_PAUSE_S = 2.0
DB_AWAY_RETRY_S = 10
DATABASE_AWAY = (OperationalError, InterfaceError)

log = logging.getLogger(__name__)


TASK_IDS = {TASK_PAGE: ("page_id", "job_id"), TASK_INGEST: ("document_id",)}
"""The ids a task's positional arguments are: bound for every log line of the task, Celery's own
``Task ... succeeded`` line included."""


@task_prerun.connect
def bind_task_ids(task: Task | None = None, args: tuple = (), **_: object) -> None:
    names = TASK_IDS.get(getattr(task, "name", ""), ())
    ids = {name: value for name, value in zip(names, args, strict=False) if value is not None}
    structlog.contextvars.bind_contextvars(**ids)


@task_postrun.connect
def unbind_task_ids(task: Task | None = None, **_: object) -> None:
    structlog.contextvars.unbind_contextvars(*TASK_IDS.get(getattr(task, "name", ""), ()))


class WorkerContext:
    """What one worker process shares across its tasks and threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pipelines: dict[str, PagePipeline] = {}
        self._jobs: dict[int, Settings] = {}
        self._primary_named: set[int] = set()

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
        """One store per process, its page leases renewed by a heartbeat thread for the process's life."""
        store = job_store(self.sessions, self.settings)
        LeaseHeartbeat(store, self.settings.page_lease_seconds).start()
        return store

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
                self._pipelines[key].stopping = SHUTTING_DOWN.is_set
            pipeline, named = self._pipelines[key], job_id in self._primary_named
        if not named:  # the job's pages are meant for this chain's first engine (degraded otherwise)
            record_primary_engine(self.sessions, job_id, pipeline.chain.primary, settings.engines)
            with self._lock:
                self._primary_named.add(job_id)
        return pipeline

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
                self._primary_named.clear()
            return self._jobs.setdefault(job_id, self.settings.for_job(recorded))


def job_store(sessions: sessionmaker[Session], settings: Settings) -> JobStore:
    return JobStore(
        sessions, lease_seconds=settings.page_lease_seconds, stuck_seconds=settings.page_time_limit
    )


SHUTTING_DOWN = threading.Event()
"""Set at the worker's warm shutdown: pages waiting for their primary engine are handed back."""


@worker_shutting_down.connect
def hand_back_waiting_pages(**_: object) -> None:
    SHUTTING_DOWN.set()


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
    with log_context(document_id=document_id):
        page_ids = ingest_document(ctx.sessions, ctx.settings, document_id)
        ctx.dispatcher.enqueue_pages(page_ids)
    return len(page_ids)


@shared_task(name=TASK_PAGE, bind=True, ignore_result=True)
def ocr_page_task(self: Task, page_id: int, job_id: int | None = None) -> str | None:
    """OCR one page; while retries last, a page whose engines all failed retryably comes back later.

    A database that is away holds the page here (the worker's threads pause
    rather than drain the queue) and, if it stays away, sends it again later
    with its engine retries untouched, instead of failing the task and leaving
    the page to the reconciler's grace period.
    """
    ctx = context()
    retries_left = self.request.retries < ctx.settings.page_retries
    with log_context(job_id=job_id, attempt=self.request.retries + 1):
        outcome = _process_while_database_away(self, ctx, page_id, job_id, retries_left)
    if outcome is None:
        return None
    if outcome.retry and not retries_left:  # handed back at shutdown: the same try, on another worker
        _later(self, page_id, job_id, "the worker is shutting down", countdown=0)
        return None
    if outcome.retry:
        raise self.retry(countdown=ctx.settings.page_retry_backoff_seconds * 2**self.request.retries)
    return outcome.status


def _process(ctx: WorkerContext, page_id: int, job_id: int | None, retries_left: bool) -> PageOutcome:
    try:
        pipeline = ctx.pipeline_for_job(job_id or ctx.job_of_page(page_id))
        return pipeline.process(page_id, allow_retry=retries_left)
    except BaseException:  # our claim, if any, runs out with its lease
        ctx.store.forget(page_id)
        raise


def _process_while_database_away(
    task: Task, ctx: WorkerContext, page_id: int, job_id: int | None, retries_left: bool
) -> PageOutcome | None:
    """The page's outcome, or None when the database stayed away and the page was sent again later."""
    deadline = time.monotonic() + DB_AWAY_WAIT_S
    while True:
        try:
            return _process(ctx, page_id, job_id, retries_left)
        except DATABASE_AWAY as error:
            if time.monotonic() > deadline:
                _later(task, page_id, job_id, f"database unreachable ({type(error).__name__})")
                return None
            time.sleep(DB_AWAY_PAUSE_S)


def _later(
    task: Task, page_id: int, job_id: int | None, reason: str, countdown: float = DB_AWAY_RETRY_S
) -> None:
    """Send the page again with its retries untouched: what kept it from running was not its fault."""
    delivery = task.request.delivery_info or {}
    log.warning("page %s: %s; sent again in %s s", page_id, reason, countdown)
    task.apply_async(
        args=[page_id, job_id],
        countdown=countdown,
        queue=delivery.get("routing_key"),
        priority=delivery.get("priority"),
        retries=task.request.retries,
    )


@shared_task(name=TASK_REDO, bind=True, ignore_result=True)
def redo_page_task(self: Task, page_id: int, job_id: int) -> str:
    """Read a degraded page again with the job's primary engine; its old result stays until then.
    While the primary is down the task comes back later, as a page task does."""
    from ocrq.worker.redo import RedoOutcome, redo_page

    ctx = context()
    outcome = redo_page(ctx.pipeline_for_job(job_id), page_id)
    if outcome is RedoOutcome.RETRY and self.request.retries < ctx.settings.page_retries:
        raise self.retry(countdown=ctx.settings.page_retry_backoff_seconds * 2**self.request.retries)
    return outcome.value


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
