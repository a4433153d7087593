"""A database with a long history (many finished pages, one attempt each), made fast with bulk inserts:
for the scrape-cost test and bench/metrics_scrape.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import Engine, event, insert
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Attempt, Document, Job, Page, utcnow

BATCH = 20_000


def add_history(sessions: sessionmaker[Session], pages: int) -> None:
    """One done job with one document of ``pages`` done pages, each with one tesseract attempt."""
    now = utcnow()
    with sessions.begin() as session:
        job = Job(status="done", result_key="k", finished_at=now)
        session.add(job)
        session.flush()
        document = Document(job_id=job.id, path="/x.pdf", relpath="x.pdf", result_key="k", status="done")
        session.add(document)
        session.flush()
        document_id = document.id
    for start in range(0, pages, BATCH):
        rows = [
            {"document_id": document_id, "index": i, "status": "done", "engine": "tesseract", "ocr_ms": 900.0}
            for i in range(start, min(pages, start + BATCH))
        ]
        with sessions.begin() as session:
            ids = session.scalars(insert(Page).returning(Page.id), rows).all()
            session.execute(
                insert(Attempt),
                [{"page_id": i, "engine": "tesseract", "outcome": "ok", "duration_ms": 900.0} for i in ids],
            )


@contextmanager
def counted_statements(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def timed_scrape(registry: CollectorRegistry) -> tuple[float, bytes]:
    clock = time.perf_counter()
    body = generate_latest(registry)
    return time.perf_counter() - clock, body
