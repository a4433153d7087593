"""Jobs as the page shows them: counts, pages per second and ETA, and a live stream of them (SSE).

The counts are the REST read model's (:func:`ocrq.api.rest.queries.list_jobs`, filtered by the
caller), so the page and the API never disagree. The rate counts only pages OCRed in this job:
pages reused from an earlier run took no time and would make the rate and the ETA lie.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.queries import job_detail, list_jobs
from ocrq.api.rest.schemas import JobPublic
from ocrq.db.models import ApiKey, Document, Job, Page
from ocrq.jobs.access import Caller, visible_jobs
from ocrq.schemas import PageStatus

STREAM_TICK_S = 1.0
STREAM_LIFETIME_S = 15.0
"""A stream ends after this and EventSource reconnects by itself (the first event repeats the state).
Short because uvicorn waits for open responses when it stops: Ctrl-C on ``ocrq api`` must not hang
on a browser tab left open (a REST long-poll holds it up to OCRQ_API_LONG_POLL_MAX_S the same way)."""
KEEPALIVE_TICKS = 15


@dataclass(frozen=True, slots=True)
class JobProgress:
    id: int
    status: str
    finished: bool
    documents: int
    total: int
    done: int
    failed: int
    degraded: int | None
    """Pages a fallback engine read, when the server counts them (None: this server does not)."""
    rate: float | None
    """Pages per second OCRed in this job (reused pages left out)."""
    eta_s: float | None
    created_at: str
    owner: str | None = None
    """The key that made the job (shown to admin keys; a tenant's jobs are all its own)."""

    @property
    def percent(self) -> int:
        return round(100 * (self.done + self.failed) / self.total) if self.total else 0


@dataclass(frozen=True, slots=True)
class _Timing:
    pages: int
    first_start: datetime | None
    last_finish: datetime | None


def jobs_progress(
    sessions: sessionmaker[Session],
    caller: Caller,
    limit: int = 50,
    offset: int = 0,
    status: str | None = None,
) -> tuple[list[JobProgress], int]:
    jobs, count = list_jobs(sessions, caller, status, limit, offset)
    timings = _timings(sessions, [job.id for job in jobs])
    owners = _owners(sessions, [job.id for job in jobs]) if caller.is_admin else {}
    shown = [_progress(job, timings.get(job.id)) for job in jobs]
    return [replace(job, owner=owners.get(job.id)) for job in shown], count


def _owners(sessions: sessionmaker[Session], job_ids: list[int]) -> dict[int, str]:
    """Key names, or the origin (cli, inbox) for jobs no key made."""
    with sessions() as session:
        rows = session.execute(
            select(Job.id, ApiKey.name, Job.origin)
            .outerjoin(ApiKey, Job.api_key_id == ApiKey.id)
            .where(Job.id.in_(job_ids))
        )
        return {job_id: name or f"({origin})" for job_id, name, origin in rows}


def job_progress(sessions: sessionmaker[Session], caller: Caller, job_id: int) -> JobProgress:
    """One job, however old (404 when the caller may not see it)."""
    job = job_detail(sessions, caller, job_id)
    return _progress(job, _timings(sessions, [job_id]).get(job_id))


def page_statuses(
    sessions: sessionmaker[Session], caller: Caller, document_ids: list[int]
) -> dict[int, list[str]]:
    """Each listed document's page statuses in page order (the job page colours its page links)."""
    statuses: dict[int, list[str]] = {document_id: [] for document_id in document_ids}
    with sessions() as session:
        rows = session.execute(
            select(Page.document_id, Page.status)
            .join(Document, Page.document_id == Document.id)
            .join(Job, Document.job_id == Job.id)
            .where(Page.document_id.in_(document_ids), visible_jobs(caller))
            .order_by(Page.document_id, Page.index)
        )
        for document_id, status in rows:
            statuses[document_id].append(status)
    return statuses


def _timings(sessions: sessionmaker[Session], job_ids: list[int]) -> dict[int, _Timing]:
    """One query for every listed job; the caller's filter was applied when the ids were chosen."""
    if not job_ids:
        return {}
    with sessions() as session:
        rows = session.execute(
            select(
                Document.job_id, func.count(Page.id), func.min(Page.started_at), func.max(Page.finished_at)
            )
            .join(Page, Page.document_id == Document.id)
            .where(
                Document.job_id.in_(job_ids),
                Page.status.in_((PageStatus.DONE, PageStatus.FAILED)),
                Page.reused.is_(False),
            )
            .group_by(Document.job_id)
        )
        return {job_id: _Timing(n, _utc(start), _utc(end)) for job_id, n, start, end in rows}


def _progress(job: JobPublic, timing: _Timing | None) -> JobProgress:
    pages = job.counts.pages
    finished = job.finished_at is not None
    rate = _rate(timing, finished)
    remaining = max(0, pages.total - pages.done - pages.failed)
    eta = remaining / rate if rate and not finished else None
    return JobProgress(
        id=job.id,
        status=job.status,
        finished=finished,
        documents=sum(job.counts.documents.values()),
        total=pages.total,
        done=pages.done,
        failed=pages.failed,
        degraded=getattr(pages, "degraded", None),
        rate=rate,
        eta_s=eta,
        created_at=job.created_at.isoformat(),
    )


def _rate(timing: _Timing | None, finished: bool) -> float | None:
    if timing is None or timing.pages == 0 or timing.first_start is None:
        return None
    end = timing.last_finish if finished and timing.last_finish else datetime.now(UTC)
    seconds = (end - timing.first_start).total_seconds()
    return timing.pages / seconds if seconds > 0 else None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def progress_events(
    request: Request, sessions: sessionmaker[Session], caller: Caller, job_id: int | None
) -> AsyncIterator[str]:
    """Server-sent events: a ``jobs`` event whenever the caller's jobs change, comments to keep alive."""
    last, ticks = "", 0
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_LIFETIME_S
    yield "retry: 1000\n\n"
    while loop.time() < ends and not await request.is_disconnected():
        jobs = await run_in_threadpool(snapshot, sessions, caller, job_id)
        state = json.dumps([asdict(job) for job in jobs])
        if state != last:
            last = state
            yield f"event: jobs\ndata: {state}\n\n"
        elif ticks % KEEPALIVE_TICKS == 0:
            yield ": keepalive\n\n"
        ticks += 1
        await asyncio.sleep(STREAM_TICK_S)


def snapshot(sessions: sessionmaker[Session], caller: Caller, job_id: int | None) -> list[JobProgress]:
    if job_id is not None:
        return [job_progress(sessions, caller, job_id)]
    return jobs_progress(sessions, caller)[0]
