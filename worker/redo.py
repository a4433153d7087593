"""Read a job's degraded pages again with its primary engine (``ocrq redo JOB --degraded``).

A degraded page stays ``done`` with its fallback result while the redo runs:
the primary engine's result replaces it in one UPDATE when (and only if) it
arrives, so a redo during another outage loses nothing. Every attempt is
recorded. Embedded jobs are redone in this process; queue jobs by workers of
the job's queue, one ``ocrq.redo_page`` task per page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page
from ocrq.errors import BrokerUnavailable, NoEngineConfigured, OcrqError, ResourceNotFound
from ocrq.jobs.degraded import degraded_page_ids, is_degraded, replace_degraded_result
from ocrq.jobs.store import JobStore, PageClaim
from ocrq.schemas import DocumentType
from ocrq.settings import Settings
from ocrq.worker.engines.chain import EngineChain, chain_failure
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.pipeline import PagePipeline, pipeline_for

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RedoPlan:
    job_id: int
    primary: str | None
    page_ids: list[int]
    queue: str | None
    """The job's page queue; None for an embedded job (redone here)."""
    job_settings: dict[str, Any]


def plan_redo(sessions: sessionmaker[Session], job_id: int) -> RedoPlan:
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise ResourceNotFound(f"no job {job_id}")
        ids = degraded_page_ids(session, job_id)
        return RedoPlan(job_id, job.primary_engine, ids, job.queue, dict(job.settings or {}))


class RedoOutcome(StrEnum):
    REPLACED = "replaced"
    """The primary engine's result replaced the fallback one."""
    SKIPPED = "skipped"
    """The page is no longer degraded (an earlier delivery redid it), or its source is gone."""
    RETRY = "retry"
    """The primary engine is down (or its circuit open): the old result stays; try later."""
    FAILED = "failed"
    """The primary engine could not read the page: the fallback result stays for good."""


def redo_page(pipeline: PagePipeline, page_id: int) -> RedoOutcome:
    """Read one degraded page again with its job's primary engine, recording every attempt."""
    sessions = pipeline.store.sessions
    with sessions() as session:
        target = _redo_target(session, page_id)
    if target is None:
        return RedoOutcome.SKIPPED
    primary, claim = target
    chain = pipeline.chain.only(primary)
    if chain is None:
        raise NoEngineConfigured(f"engine {primary} is not available here: degraded pages cannot be redone")
    try:
        image = pipeline.documents.get(claim.path, claim.doc_type).render(claim.index, chain.image_mode)
    except OcrqError as error:  # the source changed or went away: the old result stays
        log.warning("page %d cannot be redone: %s", page_id, error.message)
        return RedoOutcome.SKIPPED
    result, attempts = chain.recognize(image, pipeline.task)
    if replace_degraded_result(sessions, page_id, result, [a.as_row() for a in attempts]):
        return RedoOutcome.REPLACED
    if result is None and chain_failure(attempts).retryable:
        return RedoOutcome.RETRY
    return RedoOutcome.FAILED if result is None else RedoOutcome.SKIPPED


def _redo_target(session: Session, page_id: int) -> tuple[str, PageClaim] | None:
    row = session.execute(
        select(Job.primary_engine, Page.document_id, Page.index, Document.path, Document.detected_type)
        .join(Document, Page.document_id == Document.id)
        .join(Job, Document.job_id == Job.id)
        .where(Page.id == page_id, is_degraded())
    ).first()
    if row is None:
        return None
    primary, document_id, index, path, detected_type = row
    # Nullable columns, never NULL here: is_degraded() needs a primary engine; a paged document has a type.
    claim = PageClaim(page_id, document_id, index, Path(path), DocumentType(cast("str", detected_type)))
    return cast("str", primary), claim


def redo_here(
    sessions: sessionmaker[Session],
    settings: Settings,
    plan: RedoPlan,
    chain_factory: Callable[[Settings], EngineChain] = build_chain,
) -> int:
    """Redo an embedded job's degraded pages in this process; returns how many were replaced."""
    pipeline = pipeline_for(settings.for_job(plan.job_settings), JobStore(sessions), chain_factory)
    try:
        workers = settings.page_workers or pipeline.chain.max_in_flight
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocrq-redo") as pool:
            outcomes = pool.map(lambda page_id: redo_page(pipeline, page_id), plan.page_ids)
            return sum(outcome is RedoOutcome.REPLACED for outcome in outcomes)
    finally:
        pipeline.close()


def send_redo(app: Celery, plan: RedoPlan, priority: int = 5) -> None:
    """One redo task per page, to the job's queue, where workers with its engines take them."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from ocrq.worker.queue.celery_app import TASK_REDO
    from ocrq.worker.queue.dispatch import redis_priority

    try:
        with app.producer_or_acquire() as producer:
            for page_id in plan.page_ids:
                app.send_task(
                    TASK_REDO,
                    args=[page_id, plan.job_id],
                    queue=plan.queue,
                    priority=redis_priority(priority),
                    producer=producer,
                    ignore_result=True,
                )
    except (OperationalError, RedisError) as error:
        raise BrokerUnavailable(f"broker unreachable: {error}") from error
