"""The database is the truth: find pages and documents whose task was lost, and send them again.

A page is lost when its lease ran out (its worker died and stopped renewing
it) or it has been running past the page time limit, or when the broker holds
fewer page messages for its queue than the database has pages waiting (Redis
restarted without persistence, or was flushed). Sending again is safe: page
tasks are idempotent, so the worst case is a duplicate that finds its page
finished. A job whose documents are all finished but which is still open
(its closing transaction died) is closed here.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page, utcnow
from ocrq.jobs.store import FINISHED_DOCUMENT, JobStore, finalize_job
from ocrq.schemas import DocumentStatus, JobStatus, PageStatus
from ocrq.settings import Settings
from ocrq.worker.queue.broker_probe import RedisBrokerProbe
from ocrq.worker.queue.celery_app import TASK_INGEST, TASK_PAGE
from ocrq.worker.queue.dispatch import Dispatcher

log = logging.getLogger(__name__)


class BrokerProbe(Protocol):
    def held_ids(self, queue: str, task: str, delivered_within: float) -> set[int]: ...


def run_reconcile(
    sessions: sessionmaker[Session], settings: Settings, dispatcher: Dispatcher
) -> dict[str, int]:
    assert settings.broker_url
    probe = RedisBrokerProbe(settings.broker_url, settings.visibility_timeout)
    try:
        report = Reconciler(sessions, settings, probe, dispatcher).run()
    finally:
        probe.close()
    from ocrq.jobs.retention import remove_expired_uploads
    from ocrq.worker.documents.inbox import move_finished_sources

    report["moved"] = move_finished_sources(sessions, settings)
    report["uploads_removed"] = remove_expired_uploads(sessions, settings)
    return report


class Reconciler:
    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, probe: BrokerProbe, dispatcher: Dispatcher
    ) -> None:
        self.sessions, self.settings, self.probe, self.dispatcher = sessions, settings, probe, dispatcher
        self.store = JobStore(
            sessions, lease_seconds=settings.page_lease_seconds, stuck_seconds=settings.page_time_limit
        )

    def run(self) -> dict[str, int]:
        closed = self.close_finished_jobs()
        stale, lost, documents = self.stale_pages(), self.lost_pages(), self.lost_documents()
        self.dispatcher.enqueue_pages(stale, urgent=True)
        self.dispatcher.enqueue_pages(lost)
        self.dispatcher.enqueue_ingest(documents)
        report = {"stale_pages": len(stale), "lost_pages": len(lost), "lost_documents": len(documents)}
        report["closed_jobs"] = closed
        if any(report.values()):
            log.warning("reconciler re-sent work: %s", report)
        return report

    def stale_pages(self) -> list[int]:
        """Lease run out (worker gone) or past the page time limit: the claim will take them over."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    _open_pages().where(Page.status == PageStatus.RUNNING, self.store.abandoned(utcnow()))
                )
            )

    def close_finished_jobs(self) -> int:
        """Open jobs with documents, none of them open: close each (under its row lock)."""
        open_document = exists().where(Document.job_id == Job.id, Document.status.not_in(FINISHED_DOCUMENT))
        any_document = exists().where(Document.job_id == Job.id)
        with self.sessions() as session:
            job_ids = session.scalars(
                select(Job.id).where(Job.finished_at.is_(None), any_document, ~open_document)
            ).all()
        closed = 0
        for job_id in job_ids:
            with self.sessions.begin() as session:
                closed += finalize_job(session, job_id)
        return closed

    def lost_pages(self) -> list[int]:
        lost: list[int] = []
        for queue in self._active_queues():
            lost.extend(self._lost_in_queue(queue))
        return lost

    def lost_documents(self) -> list[int]:
        """Documents never ingested whose ingest message the CPU queue no longer holds."""
        with self.sessions() as session:
            waiting = list(
                session.scalars(
                    select(Document.id)
                    .join(Job)
                    .where(
                        Document.status == DocumentStatus.QUEUED,
                        Document.page_count == 0,
                        Document.created_at < self._grace_cutoff(),
                        Job.queue.is_not(None),
                        Job.status != JobStatus.CANCELLED,
                    )
                    .order_by(Document.id)
                )
            )
        held = self.probe.held_ids(self.settings.cpu_queue, TASK_INGEST, self.settings.reconcile_grace)
        return [document_id for document_id in waiting if document_id not in held]

    def _lost_in_queue(self, queue: str) -> list[int]:
        with self.sessions() as session:
            waiting = list(
                session.scalars(
                    _open_pages()
                    .where(
                        Page.status == PageStatus.QUEUED,
                        Job.queue == queue,
                        _sent_before(self._grace_cutoff()),
                    )
                    .order_by(Page.enqueued_at, Page.id)
                )
            )
        held = self.probe.held_ids(queue, TASK_PAGE, self.settings.reconcile_grace)
        return [page_id for page_id in waiting if page_id not in held]

    def _active_queues(self) -> list[str]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Job.queue).distinct().where(Job.queue.is_not(None), Job.finished_at.is_(None))
                )
            )

    def _grace_cutoff(self) -> datetime:
        return utcnow() - timedelta(seconds=self.settings.reconcile_grace)


def _sent_before(cutoff: datetime) -> ColumnElement[bool]:
    """Sent before the cutoff, or created before it and never marked sent (a crash between the two)."""
    return or_(Page.enqueued_at < cutoff, and_(Page.enqueued_at.is_(None), Page.queued_at < cutoff))


def _open_pages() -> Select[int]:
    """Page ids of jobs still open and not cancelled."""
    return (
        select(Page.id)
        .join(Document, Page.document_id == Document.id)
        .join(Job, Document.job_id == Job.id)
        .where(Job.finished_at.is_(None), Job.status != JobStatus.CANCELLED)
    )
