"""The embedded default behind the API: jobs run one after another in a background thread.

Without a broker the API process is also the worker, as ``submit-batch`` is on
one box. Request handlers only register jobs and hand their ids over; this
thread runs :class:`ocrq.worker.embedded.EmbeddedRunner` (the same code the CLI uses),
so no OCR ever happens in a request handler.
"""

from __future__ import annotations

import logging
import queue
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job
from ocrq.errors import OcrqError
from ocrq.jobs.store import FINISHED_DOCUMENT, JobStore
from ocrq.settings import Settings
from ocrq.worker.embedded import EmbeddedRunner
from ocrq.worker.redo import RedoPlan, redo_here

log = logging.getLogger("ocrq.api.embedded")

STOP_TIMEOUT_S = 30.0


class BackgroundRunner:
    """A FIFO of job ids (and redos) and the one thread that runs them (pages are parallel inside a job)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._jobs: queue.Queue[tuple[int | RedoPlan, Settings] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def enqueue(self, job_id: int, settings: Settings) -> None:
        self._jobs.put((job_id, settings))

    def enqueue_redo(self, plan: RedoPlan, settings: Settings) -> None:
        """Degraded pages of a finished job, read again after the jobs queued before."""
        self._jobs.put((plan, settings))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ocrq-embedded-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the job in hand (a later start resumes the rest), then end the thread."""
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join(STOP_TIMEOUT_S)
        self._thread = None

    def _loop(self) -> None:
        while (item := self._jobs.get()) is not None:
            self._run(*item)

    def _run(self, job_id: int | RedoPlan, settings: Settings) -> None:
        if isinstance(job_id, RedoPlan):
            self._redo(job_id, settings)
            return
        try:
            EmbeddedRunner(self.sessions, settings).run(job_id)
        except Exception as error:  # the thread must survive; the job must not stay "running" forever
            log.exception("embedded job %s failed", job_id)
            self._fail_open_documents(job_id, _as_ocrq_error(error))

    def _redo(self, plan: RedoPlan, settings: Settings) -> None:
        try:
            replaced = redo_here(self.sessions, settings, plan)
            log.info("job %s: %d of %d degraded pages redone", plan.job_id, replaced, len(plan.page_ids))
        except Exception:  # the old results stay; the thread must survive
            log.exception("redo of job %s failed", plan.job_id)

    def _fail_open_documents(self, job_id: int, error: OcrqError) -> None:
        with self.sessions() as session:
            open_ids = session.scalars(
                select(Document.id).where(
                    Document.job_id == job_id, Document.status.not_in(FINISHED_DOCUMENT)
                )
            ).all()
        store = JobStore(self.sessions)
        for document_id in open_ids:
            store.fail_document(document_id, error)


def unfinished_embedded_jobs(sessions: sessionmaker[Session]) -> list[Job]:
    """API jobs of this box left unfinished by a restart: they are run again, idempotently."""
    with sessions() as session:
        return list(
            session.scalars(
                select(Job)
                .where(Job.origin == "api", Job.queue.is_(None), Job.finished_at.is_(None))
                .order_by(Job.id)
            )
        )


def _as_ocrq_error(error: Exception) -> OcrqError:
    if isinstance(error, OcrqError):
        return error
    return OcrqError(f"the job's runner failed: {type(error).__name__}")
