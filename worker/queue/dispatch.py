"""Sending work to Celery: ingest tasks for documents, page tasks for pages.

Only ids travel; the database row is marked ``enqueued_at`` before the message
is sent, so the reconciler can tell a page that waits from a page that was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page, utcnow
from ocrq.errors import BrokerUnavailable
from ocrq.settings import Settings
from ocrq.worker.documents.ingest import create_job
from ocrq.worker.documents.sources import SourceFile
from ocrq.worker.queue.celery_app import TASK_INGEST, TASK_PAGE

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, app: Celery, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.app, self.sessions, self.settings = app, sessions, settings

    def submit(
        self, sources: list[SourceFile], origin: str = "cli", *, reuse: bool = True, priority: int = 5
    ) -> int:
        """Register a job for the sources and queue their ingestion; returns the job id.

        ``priority``: 0 lowest to 9 highest; its pages overtake lower ones waiting in the same queue.
        """
        job_id = create_job(
            self.sessions,
            sources,
            self.settings,
            origin=origin,
            queue=self.settings.gpu_queue,
            reuse=reuse,
            priority=priority,
        )
        with self.sessions() as session:
            document_ids = session.scalars(select(Document.id).where(Document.job_id == job_id)).all()
        try:
            self.enqueue_ingest(document_ids)
        except BrokerUnavailable as error:  # the job is registered: the reconciler sends it later
            log.warning("job %s registered but not queued yet: %s", job_id, error.message)
        return job_id

    def enqueue_ingest(self, document_ids: Iterable[int]) -> None:
        with _broker_errors(), self.app.producer_or_acquire() as producer:
            for document_id in document_ids:
                self.app.send_task(
                    TASK_INGEST,
                    args=[document_id],
                    queue=self.settings.cpu_queue,
                    producer=producer,
                    ignore_result=True,
                )

    def enqueue_pages(self, page_ids: Sequence[int], *, urgent: bool = False) -> None:
        """Mark, then send: a crash in between leaves pages the reconciler will find.

        ``urgent`` (pages a dead worker had in hand) jumps the queue: they were
        already being worked on and should not wait behind the whole backlog.
        """
        if not page_ids:
            return
        for (queue, job_id, priority), ids in self._pages_by_job(page_ids).items():
            priority = URGENT_PRIORITY if urgent else priority
            self._mark_enqueued(ids)
            with _broker_errors(), self.app.producer_or_acquire() as producer:
                for page_id in ids:
                    self.app.send_task(
                        TASK_PAGE,
                        args=[page_id, job_id],
                        queue=queue,
                        priority=redis_priority(priority),
                        producer=producer,
                        ignore_result=True,
                    )

    def _pages_by_job(self, page_ids: Sequence[int]) -> dict[tuple[str, int, int], list[int]]:
        with self.sessions() as session:
            rows = session.execute(
                select(Page.id, Job.queue, Job.id, Job.settings)
                .join(Document, Page.document_id == Document.id)
                .join(Job, Document.job_id == Job.id)
                .where(Page.id.in_(page_ids))
            ).all()
        grouped: dict[tuple[str, int, int], list[int]] = {}
        for page_id, queue, job_id, job_settings in rows:
            key = (
                queue or self.settings.gpu_queue,
                job_id,
                int(job_settings.get("priority", DEFAULT_PRIORITY)),
            )
            grouped.setdefault(key, []).append(page_id)
        return grouped

    def _mark_enqueued(self, page_ids: list[int]) -> None:
        with self.sessions.begin() as session:
            session.execute(update(Page).where(Page.id.in_(page_ids)).values(enqueued_at=utcnow()))


DEFAULT_PRIORITY = 5
URGENT_PRIORITY = 9


def redis_priority(priority: int) -> int:
    """Our 0 (lowest) to 9 (highest) as kombu's Redis levels, where 0 is served first."""
    return 9 - max(0, min(9, priority))


@contextmanager
def _broker_errors() -> Iterator[None]:
    """kombu and redis-py failures, as the error tree's retryable broker error."""
    try:
        yield
    except (OperationalError, RedisError) as error:
        raise BrokerUnavailable(f"broker unreachable: {error}") from error
