"""The embedded runner: a job's documents and pages done in this process, without a broker.

Pages go to a small thread pool through a bounded window, so at most a few
rendered pages exist at once whatever the document length.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Page
from ocrq.errors import OcrqError
from ocrq.jobs.degraded import record_primary_engine
from ocrq.jobs.store import JobStore
from ocrq.logs import with_log_context
from ocrq.schemas import PageStatus
from ocrq.settings import Settings
from ocrq.worker.documents.ingest import ingest_document
from ocrq.worker.engines.chain import EngineChain
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.pipeline import PageOutcome, pipeline_for
from ocrq.worker.queue.leases import LeaseHeartbeat

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Progress:
    """Pages of a job: what is known so far, for a progress bar."""

    total: int = 0
    done: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed


ProgressCallback = Callable[[Progress], None]


class EmbeddedRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        chain_factory: Callable[[Settings], EngineChain] = build_chain,
    ) -> None:
        self.sessions, self.settings = sessions, settings
        self.store = JobStore(
            sessions, lease_seconds=settings.page_lease_seconds, stuck_seconds=settings.page_time_limit
        )
        self.chain_factory = chain_factory

    def run(self, job_id: int, on_progress: ProgressCallback = lambda _p: None) -> None:
        """Ingest every document, then OCR every page still to do; returns when the job is finished.

        However it ends, the job does not stay ``running``: Ctrl-C closes it as
        ``interrupted`` (and re-raises), any other failure fails its open
        documents with the reason (and re-raises).
        """
        try:
            self._run(job_id, on_progress)
        except KeyboardInterrupt:
            self.store.interrupt_job(job_id)
            raise
        except Exception as error:
            self._fail_open_documents(job_id, error)
            raise

    def _fail_open_documents(self, job_id: int, error: Exception) -> None:
        try:
            self.store.fail_open_documents(job_id, _as_ocrq_error(error))
        except Exception:  # the database itself is gone: the original error is the one to report
            log.exception("could not record why job %s stopped", job_id)

    def _run(self, job_id: int, on_progress: ProgressCallback) -> None:
        self.store.start_job(job_id)
        page_ids = self._ingest_all(job_id)
        progress = job_progress(self.sessions, job_id)
        on_progress(progress)
        pipeline = pipeline_for(self.settings, self.store, self.chain_factory)
        heartbeat = LeaseHeartbeat(self.store, self.settings.page_lease_seconds).start()
        record_primary_engine(self.sessions, job_id, pipeline.chain.primary, self.settings.engines)
        process = with_log_context(pipeline.process, job_id=job_id)  # page threads: a context each
        try:
            self._run_pages(process, pipeline.chain.max_in_flight, page_ids, progress, on_progress)
        finally:
            heartbeat.stop()
            pipeline.close()

    def _ingest_all(self, job_id: int) -> list[int]:
        with self.sessions() as session:
            document_ids = session.scalars(select(Document.id).where(Document.job_id == job_id)).all()
        page_ids: list[int] = []
        for document_id in document_ids:
            page_ids.extend(ingest_document(self.sessions, self.settings, document_id))
        return page_ids

    def _run_pages(
        self,
        process: Callable[[int], PageOutcome],
        max_in_flight: int,
        page_ids: Iterable[int],
        progress: Progress,
        on_progress: ProgressCallback,
    ) -> None:
        workers = self.settings.page_workers or max_in_flight
        lock = threading.Lock()

        def record(outcome: PageOutcome) -> None:
            with lock:
                progress.done += outcome.status == PageStatus.DONE
                progress.failed += outcome.status == PageStatus.FAILED
                on_progress(progress)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocrq-page")
        try:
            _feed(pool, process, page_ids, window=2 * workers, on_result=record)
        except KeyboardInterrupt:  # pages not started are dropped; those in hand finish and are stored
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def job_progress(sessions: sessionmaker[Session], job_id: int) -> Progress:
    """Page counts of a job as the database has them (the Celery path's progress bar reads this too)."""
    with sessions() as session:
        counts = dict(
            session.execute(
                select(Page.status, func.count())
                .join(Document)
                .where(Document.job_id == job_id)
                .group_by(Page.status)
            ).all()
        )
    done, failed = counts.get(PageStatus.DONE, 0), counts.get(PageStatus.FAILED, 0)
    return Progress(sum(counts.values()), done, failed)


def _feed(
    pool: ThreadPoolExecutor,
    work: Callable[[int], PageOutcome],
    items: Iterable[int],
    window: int,
    on_result: Callable[[PageOutcome], None],
) -> None:
    """Submit items keeping at most ``window`` in flight; results are handed over as they finish."""
    pending: set[Future[PageOutcome]] = set()
    for item in items:
        if len(pending) >= window:
            pending = _drain(wait(pending, return_when=FIRST_COMPLETED), on_result)
        pending.add(pool.submit(work, item))
    while pending:
        pending = _drain(wait(pending, return_when=FIRST_COMPLETED), on_result)


def _drain(
    waited: tuple[set[Future[PageOutcome]], set[Future[PageOutcome]]],
    on_result: Callable[[PageOutcome], None],
) -> set[Future[PageOutcome]]:
    finished, still_pending = waited
    for future in finished:
        on_result(future.result())
    return still_pending


def _as_ocrq_error(error: Exception) -> OcrqError:
    if isinstance(error, OcrqError):
        return error
    return OcrqError(f"the job's runner failed: {type(error).__name__}: {error}")
