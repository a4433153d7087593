"""The system panel: who is working, what is waiting, which engines look down, pages per second.

Circuit breakers live in each worker's memory, so no process can read another's. The panel judges
each engine from what the workers recorded instead: an engine whose latest attempts are a run of
engine-side failures at least ``OCRQ_BREAKER_FAILURES`` long is shown as open, and said to be
judged, not read. The chart counts only the caller's pages (every page for an admin key).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.admission import backlog
from ocrq.db.models import Attempt, Document, Job, Page
from ocrq.errors import error_from_code
from ocrq.jobs.access import Caller, visible_jobs
from ocrq.redaction import mask_url
from ocrq.schemas import PageStatus
from ocrq.settings import Settings

log = logging.getLogger("ocrq.api.web")

CHART_MINUTES = 60
CHART_WIDTH, CHART_HEIGHT = 600, 120
RECENT_ATTEMPTS = 50
RECENT_MINUTES = 5
PING_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    height: float
    pages: int
    minute: str


@dataclass(frozen=True, slots=True)
class EngineHealth:
    engine: str
    state: str
    """closed, open (judged) or unknown (no attempts recorded lately)."""
    trailing_failures: int
    last_error: str | None


@dataclass
class SystemView:
    mode: str
    broker: str | None
    workers: list[str] = field(default_factory=list)
    workers_note: str = ""
    queues: dict[str, int] = field(default_factory=dict)
    queues_note: str = ""
    engines: list[EngineHealth] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    pages_last_hour: int = 0
    peak_rate: float = 0.0
    """Pages per second in the busiest minute."""
    recent_rate: float = 0.0
    """Pages per second over the last RECENT_MINUTES."""
    flower_url: str | None = None


def system_view(
    sessions: sessionmaker[Session], settings: Settings, caller: Caller, celery: Any
) -> SystemView:
    embedded = settings.embedded
    view = SystemView(
        mode="embedded" if embedded else "queue",
        broker=None if embedded else mask_url(settings.broker_url or ""),
        flower_url=settings.flower_url,
    )
    _fill_workers(view, settings, celery, caller)
    _fill_queues(view, sessions, settings)
    view.engines = [_engine_health(sessions, engine, settings) for engine in settings.engines]
    _fill_chart(view, sessions, caller)
    return view


def _fill_workers(view: SystemView, settings: Settings, celery: Any, caller: Caller) -> None:
    if celery is None:
        threads = settings.page_workers or os.cpu_count() or 1
        view.workers_note = f"jobs run inside this API process ({threads} page threads)"
        return
    try:
        replies = celery.control.ping(timeout=PING_TIMEOUT_S) or []
    except Exception as error:  # the panel exists to say what is down
        view.workers_note = f"workers could not be asked: {type(error).__name__}"
        return
    names = sorted(name for reply in replies for name in reply)
    view.workers = names if caller.is_admin else []
    view.workers_note = f"{len(names)} worker(s) answered within {PING_TIMEOUT_S:g} s"


def _fill_queues(view: SystemView, sessions: sessionmaker[Session], settings: Settings) -> None:
    if settings.embedded:
        view.queues = {"embedded (pages and documents waiting)": backlog(sessions)}
        return
    from ocrq.worker.queue.broker_probe import RedisBrokerProbe

    probe = RedisBrokerProbe(settings.broker_url or "", settings.visibility_timeout)
    try:
        view.queues = {queue: probe.waiting(queue) for queue in (settings.gpu_queue, settings.cpu_queue)}
    except Exception as error:
        view.queues_note = f"the broker could not be read: {type(error).__name__}"
    finally:
        probe.close()


def _engine_health(sessions: sessionmaker[Session], engine: str, settings: Settings) -> EngineHealth:
    since = datetime.now(UTC) - timedelta(hours=1)
    with sessions() as session:
        rows = session.execute(
            select(Attempt.outcome, Attempt.error_code, Attempt.error_message)
            .where(Attempt.engine == engine, Attempt.started_at >= since)
            .order_by(Attempt.id.desc())
            .limit(RECENT_ATTEMPTS)
        ).all()
    if not rows:
        return EngineHealth(engine, "unknown", 0, None)
    trailing = 0
    for outcome, code, message in rows:
        if outcome == "ok":
            break
        if error_from_code(code or "engine_error", message or "").retryable:
            trailing += 1
    state = "open (judged)" if trailing >= settings.breaker_failures else "closed"
    last_error = next((f"{code}" for outcome, code, _ in rows if outcome != "ok"), None)
    return EngineHealth(engine, state, trailing, last_error)


def _fill_chart(view: SystemView, sessions: sessionmaker[Session], caller: Caller) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = now - timedelta(minutes=CHART_MINUTES)
    counts = [0] * CHART_MINUTES
    for (finished,) in _finished_pages(sessions, caller, start):
        moment = finished if finished.tzinfo else finished.replace(tzinfo=UTC)
        slot = int((moment - start).total_seconds() // 60)
        if 0 <= slot < CHART_MINUTES:
            counts[slot] += 1
    view.pages_last_hour, view.peak_rate = sum(counts), max(counts) / 60
    view.recent_rate = sum(counts[-RECENT_MINUTES:]) / (RECENT_MINUTES * 60)
    view.bars = _bars(counts, start)


def _finished_pages(sessions: sessionmaker[Session], caller: Caller, start: datetime) -> Sequence[Any]:
    with sessions() as session:
        return session.execute(
            select(Page.finished_at)
            .join(Document, Page.document_id == Document.id)
            .join(Job, Document.job_id == Job.id)
            .where(
                visible_jobs(caller),
                Page.finished_at >= start,
                Page.reused.is_(False),
                Page.status.in_((PageStatus.DONE, PageStatus.FAILED)),
            )
        ).all()


def _bars(counts: list[int], start: datetime) -> list[Bar]:
    peak, slot = max(max(counts), 1), CHART_WIDTH / CHART_MINUTES
    bars = []
    for index, pages in enumerate(counts):
        height = CHART_HEIGHT * pages / peak
        minute = (start + timedelta(minutes=index)).strftime("%H:%M")
        bars.append(Bar(index * slot + 1, CHART_HEIGHT - height, height, pages, minute))
    return bars
