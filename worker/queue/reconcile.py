"""The database is the truth: find pages and documents whose task was lost, and send them again.

A page is lost when it has been running longer than the page lease (its
worker died and Redis did not redeliver), or when the broker holds fewer
messages for its queue than the database has pages waiting (Redis restarted
without persistence, or was flushed). Sending again is safe: page tasks are
idempotent, so the worst case is a duplicate that finds its page finished.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page, utcnow
from ocrq.schemas import DocumentStatus, JobStatus, PageStatus
from ocrq.settings import Settings
from ocrq.worker.queue.broker_probe import RedisBrokerProbe
from ocrq.worker.queue.dispatch import Dispatcher

log = logging.getLogger(__name__)


class BrokerProbe(Protocol):
    def pending(self, queue: str) -> int: ...


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

    def run(self) -> dict[str, int]:
        stale, lost, documents = self.stale_pages(), self.lost_pages(), self.lost_documents()
        self.dispatcher.enqueue_pages(stale + lost)
        self.dispatcher.enqueue_ingest(documents)
        report = {"stale_pages": len(stale), "lost_pages": len(lost), "lost_documents": len(documents)}
        if any(report.values()):
            log.warning("reconciler re-sent work: %s", report)
        return report

    def stale_pages(self) -> list[int]:
        """Running for longer than the lease: the claim will take them over."""
        cutoff = utcnow() - timedelta(seconds=self.settings.page_time_limit)
        with self.sessions() as session:
            return list(
                session.scalars(
                    _open_pages().where(Page.status == PageStatus.RUNNING, Page.started_at < cutoff)
                )
            )

    def lost_pages(self) -> list[int]:
        lost: list[int] = []
        for queue in self._active_queues():
            lost.extend(self._lost_in_queue(queue))
        return lost

    def lost_documents(self) -> list[int]:
        """Documents never ingested while the CPU queue holds fewer messages than they number."""
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
        missing = len(waiting) - self.probe.pending(self.settings.cpu_queue)
        return waiting[:missing] if missing > 0 else []

    def _lost_in_queue(self, queue: str) -> list[int]:
        with self.sessions() as session:
            waiting = list(
                session.scalars(
                    _open_pages()
                    .where(
                        Page.status == PageStatus.QUEUED,
                        Job.queue == queue,
                        Page.enqueued_at < self._grace_cutoff(),
                    )
                    .order_by(Page.enqueued_at, Page.id)
                )
            )
        missing = len(waiting) - self.probe.pending(queue)
        return waiting[:missing] if missing > 0 else []

    def _active_queues(self) -> list[str]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Job.queue).distinct().where(Job.queue.is_not(None), Job.finished_at.is_(None))
                )
            )

    def _grace_cutoff(self) -> datetime:
        return utcnow() - timedelta(seconds=self.settings.reconcile_grace)


def _open_pages() -> Select[tuple[int]]:
    """Page ids of jobs still open and not cancelled."""
    return (
        select(Page.id)
        .join(Document, Page.document_id == Document.id)
        .join(Job, Document.job_id == Job.id)
        .where(Job.finished_at.is_(None), Job.status != JobStatus.CANCELLED)
    )
