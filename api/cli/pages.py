"""``ocrq status JOB --pages``: every page of a job, the engine that did it and each attempt on the way."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.schemas import PageSummary

MAX_PAGES_PER_DOCUMENT = 500


def _attempts(page: PageSummary) -> str:
    def one(engine: str, outcome: str, code: str | None, ms: float) -> str:
        return f"{engine} {outcome}" + (f" ({code})" if code else "") + f" {ms:.0f} ms"

    return " → ".join(one(a.engine, a.outcome, a.error_code, a.duration_ms) for a in page.attempts)


def print_pages(sessions: sessionmaker[Session], job_id: int, console: Console | None = None) -> None:
    from ocrq.api.rest.queries import list_pages
    from ocrq.db.models import Document
    from ocrq.jobs.access import OPERATOR

    with sessions() as session:
        documents = session.execute(
            select(Document.id, Document.relpath).where(Document.job_id == job_id).order_by(Document.id)
        ).all()
    table = Table(title=f"Job {job_id}: pages and engine attempts")
    for column in ("document", "page", "status", "engine", "attempts"):
        table.add_column(column, overflow="fold")
    for document_id, relpath in documents:
        pages, _ = list_pages(sessions, OPERATOR, document_id, MAX_PAGES_PER_DOCUMENT, 0)
        for page in pages:
            table.add_row(relpath, str(page.number), page.status, page.engine or "-", _attempts(page) or "-")
    (console or Console()).print(table)
