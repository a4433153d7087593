"""What a chaos run left in the database: counts for the soak's assertions and the benchmark's figures."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ocrq.db.models import Attempt, Document, Job, Page
from tests.chaos import ChaosRun, Fault


@dataclass
class PageRow:
    id: int
    document: str
    status: str
    engine: str | None
    error_code: str | None
    finished_at: datetime | None
    attempts: list[tuple[str, str, str | None]] = field(default_factory=list)
    """(engine, outcome, error code) in order."""


@dataclass
class ChaosReport:
    seconds: float
    jobs: int
    jobs_closed: int
    job_statuses: dict[str, int]
    pages_expected: int
    pages: list[PageRow]
    counter_mismatches: list[str]
    recovery: list[tuple[str, str, float | None]]
    """(fault, what was measured, seconds)."""
    stopped_late: list[str] = field(default_factory=list)
    """Processes still running 30 s after SIGTERM at the end of the run."""

    @property
    def lost(self) -> list[PageRow]:
        return [page for page in self.pages if page.status not in ("done", "failed")]

    @property
    def missing_rows(self) -> int:
        return self.pages_expected - len(self.pages)

    @property
    def duplicate_work(self) -> list[PageRow]:
        """Pages OCRed successfully more than once (a redelivery that lost the race); stored once."""
        return [page for page in self.pages if sum(a[1] == "ok" for a in page.attempts) > 1]

    def by_engine(self) -> Counter[str]:
        return Counter(page.engine or f"({page.status})" for page in self.pages)

    def degraded(self, primary: str = "vllm") -> list[PageRow]:
        return [page for page in self.pages if page.status == "done" and page.engine != primary]

    def lines(self) -> list[str]:
        out = [
            f"wall time {self.seconds:.0f} s; jobs closed {self.jobs_closed}/{self.jobs} {self.job_statuses}",
            f"pages expected {self.pages_expected}, rows {len(self.pages)}, lost {len(self.lost)}, "
            f"stored twice {len(self.counter_mismatches)}, duplicate OCR work {len(self.duplicate_work)}",
            f"pages by engine {dict(self.by_engine())}; degraded (not vllm) {len(self.degraded())}",
            f"still running 30 s after SIGTERM: {self.stopped_late or 'none'}",
        ]
        return out + self.recovery_lines()

    def recovery_lines(self) -> list[str]:
        """Per fault kind and measure: the worst and the median over the run's faults of that kind."""
        grouped: dict[tuple[str, str], list[float | None]] = {}
        for kind, what, seconds in self.recovery:
            grouped.setdefault((kind, what), []).append(seconds)
        out = []
        for (kind, what), values in grouped.items():
            seen = sorted(v for v in values if v is not None)
            figures = f"worst {seen[-1]:.1f} s, median {seen[len(seen) // 2]:.1f} s" if seen else "-"
            out.append(f"recover {kind} x{len(values)}: {what}: {figures} ({len(values) - len(seen)} n/a)")
        return out


def read_report(run: ChaosRun, poison_pages: int = 1) -> ChaosReport:
    sessions = run.sessions
    with sessions() as session:
        statuses = Counter(session.scalars(select(Job.status).where(Job.id.in_(run.job_ids))).all())
        closed = session.scalar(
            select(func.count()).select_from(Job).where(Job.id.in_(run.job_ids), Job.finished_at.is_not(None))
        )
        pages = _pages(session, run.job_ids)
        mismatches = _counter_mismatches(session, run.job_ids)
    expected = run.plan.pages + (2 + poison_pages if run.poison_job else 0)
    recovery = [measure for fault in run.faults for measure in _recovery(fault, pages)]
    return ChaosReport(
        run.seconds,
        len(run.job_ids),
        closed or 0,
        dict(statuses),
        expected,
        pages,
        mismatches,
        recovery,
        run.stopped_late,
    )


def _pages(session: Session, job_ids: list[int]) -> list[PageRow]:
    rows = session.execute(
        select(Page.id, Document.relpath, Page.status, Page.engine, Page.error_code, Page.finished_at)
        .join(Document)
        .where(Document.job_id.in_(job_ids))
        .order_by(Page.id)
    ).all()
    pages = {row[0]: PageRow(*row) for row in rows}
    attempts = session.execute(
        select(Attempt.page_id, Attempt.engine, Attempt.outcome, Attempt.error_code)
        .where(Attempt.page_id.in_(list(pages)))
        .order_by(Attempt.id)
    ).all()
    for page_id, engine, outcome, code in attempts:
        pages[page_id].attempts.append((engine, outcome, code))
    return list(pages.values())


def _counter_mismatches(session: Session, job_ids: list[int]) -> list[str]:
    """Documents whose counters disagree with their page rows: a page counted (stored) twice, or never."""
    rows = session.execute(
        select(
            Document.relpath,
            Document.page_count,
            Document.pages_done,
            Document.pages_failed,
            func.count(Page.id).filter(Page.status == "done"),
            func.count(Page.id).filter(Page.status == "failed"),
        )
        .join(Page, Page.document_id == Document.id, isouter=True)
        .where(Document.job_id.in_(job_ids))
        .group_by(Document.id)
    ).all()
    return [
        f"{path}: counters {done}+{failed} of {count}, rows {rows_done}+{rows_failed}"
        for path, count, done, failed, rows_done, rows_failed in rows
        if (done, failed) != (rows_done, rows_failed)
    ]


def _recovery(fault: Fault, pages: list[PageRow]) -> list[tuple[str, str, float | None]]:
    """How long the fault held work up, three ways (None: never, within the run)."""
    in_hand = {page.id for page in pages if page.id in set(fault.running_at_start)}
    ends = [page.finished_at for page in pages if page.id in in_hand]
    last = None if not ends or None in ends else max(e for e in ends if e is not None)
    measured = [
        (fault.kind, "pages in hand at the fault all stored", _since(fault.started, last)),
        (fault.kind, "first page stored after the repair", _first_after(fault.repaired, pages)),
    ]
    if fault.kind == "engine_down":
        vllm = [page for page in pages if page.engine == "vllm"]
        measured.append(
            (fault.kind, "first page read by vllm after the repair", _first_after(fault.repaired, vllm))
        )
    return measured


def _first_after(moment: datetime | None, pages: list[PageRow]) -> float | None:
    after = [p.finished_at for p in pages if moment and p.finished_at and p.finished_at > moment]
    return _since(moment, min(after)) if after else None


def _since(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()
