"""Every state change of a job, document or page, written so that replays are harmless.

Delivery is at-least-once (a redelivered Celery task, a resumed batch), so each
transition is a conditional UPDATE: a page already finished is never finished
again, and document counters move exactly once per page. A job closes under
a row lock on the job, so two documents finishing at once cannot both miss
each other (write skew under READ COMMITTED).

A claimed page carries a short lease that the claiming worker renews while it
works (:meth:`JobStore.renew_leases`, driven by a heartbeat thread): a killed
worker's pages are free again within about a lease, while a page whose engine
is truly stuck is taken over only after ``stuck_seconds``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Update, and_, case, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Attempt, Document, Job, Page, utcnow
from ocrq.db.session import rows_changed
from ocrq.errors import OcrqError
from ocrq.jobs.attempts import AttemptRecord
from ocrq.schemas import DocumentStatus, DocumentType, JobStatus, PageResult, PageStatus

FINISHED_DOCUMENT = (
    DocumentStatus.DONE,
    DocumentStatus.PARTIAL,
    DocumentStatus.FAILED,
    DocumentStatus.CANCELLED,
)
FINISHED_PAGE = (PageStatus.DONE, PageStatus.FAILED, PageStatus.CANCELLED)
DEFAULT_LEASE_SECONDS = 30
DEFAULT_STUCK_SECONDS = 900


@dataclass(frozen=True, slots=True)
class PageClaim:
    """What a page worker needs to render and OCR one page."""

    page_id: int
    document_id: int
    index: int
    path: Path
    doc_type: DocumentType


@dataclass(frozen=True, slots=True)
class PageFinish:
    """The outcome of one page: a result or an error, plus how it went."""

    result: PageResult | None
    error: OcrqError | None
    render_ms: float | None
    size: tuple[int, int] | None
    attempts: list[AttemptRecord] = field(default_factory=list)


class JobStore:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        stuck_seconds: float = DEFAULT_STUCK_SECONDS,
    ) -> None:
        self.sessions = sessions
        self.lease = timedelta(seconds=lease_seconds)
        self.stuck = timedelta(seconds=max(stuck_seconds, lease_seconds))
        self._held: set[int] = set()
        self._held_lock = threading.Lock()

    def claim_page(self, page_id: int) -> PageClaim | None:
        """Mark a page running; None when it is finished or another worker holds a fresh lease.

        A page left ``running`` longer than the lease belonged to a worker that
        died; the claim takes it over. Core statements on the session's
        connection: this runs once per page and must stay cheap.
        """
        with self.sessions.begin() as session:
            connection = session.connection()
            claimed = connection.execute(self._claim_statement(page_id)).first()
            if claimed is None:
                return None
            document_id, index = claimed  # not claimed.index: that is also the name of tuple.index
            document = connection.execute(
                select(Document.path, Document.detected_type, Document.status, Document.job_id).where(
                    Document.id == document_id
                )
            ).one()
            if document.status == DocumentStatus.QUEUED:
                _start_document(connection, document_id, document.job_id)
            doc_type = DocumentType(document.detected_type)
            self._hold(page_id)
            return PageClaim(page_id, document_id, index, Path(document.path), doc_type)

    def _claim_statement(self, page_id: int) -> Update:
        now = utcnow()
        claimable = or_(
            Page.status == PageStatus.QUEUED, and_(Page.status == PageStatus.RUNNING, self.abandoned(now))
        )
        return (
            update(Page)
            .where(Page.id == page_id, claimable)
            .values(status=PageStatus.RUNNING, started_at=now, lease_expires_at=now + self.lease)
            .returning(Page.document_id, Page.index)
        )

    def abandoned(self, now: datetime) -> ColumnElement[bool]:
        """A running page whose lease ran out (its worker is gone), or that is stuck past the hard limit."""
        return or_(
            Page.lease_expires_at < now,
            and_(Page.lease_expires_at.is_(None), Page.started_at < now - self.lease),
            Page.started_at < now - self.stuck,
        )

    def renew_leases(self) -> int:
        """Extend the lease of every page this process is working on; the heartbeat calls this."""
        with self._held_lock:
            held = list(self._held)
        if not held:
            return 0
        with self.sessions.begin() as session:
            return rows_changed(
                session,
                update(Page)
                .where(Page.id.in_(held), Page.status == PageStatus.RUNNING)
                .values(lease_expires_at=utcnow() + self.lease),
            )

    def forget(self, page_id: int) -> None:
        """Stop renewing a page's lease (finished, put back, or its task died)."""
        with self._held_lock:
            self._held.discard(page_id)

    def _hold(self, page_id: int) -> None:
        with self._held_lock:
            self._held.add(page_id)

    def finish_page(self, claim: PageClaim, finish: PageFinish) -> bool:
        """Store the outcome once; returns False when another delivery got there first."""
        try:
            return self._store_finish(claim, finish)
        finally:
            self.forget(claim.page_id)

    def _store_finish(self, claim: PageClaim, finish: PageFinish) -> bool:
        with self.sessions.begin() as session:
            connection = session.connection()
            if finish.attempts:  # kept even for a late duplicate: they happened
                connection.execute(
                    insert(Attempt), [a.as_row() | {"page_id": claim.page_id} for a in finish.attempts]
                )
            changed = connection.execute(
                update(Page)
                .where(Page.id == claim.page_id, Page.status.not_in(FINISHED_PAGE))
                .values(**_page_values(finish))
            ).rowcount
            if not changed:
                return False
            if _count_page(connection, claim.document_id, ok=finish.error is None):
                self._close_if_complete(session, claim.document_id)
            return True

    def release_page(self, claim: PageClaim, attempts: list[AttemptRecord]) -> None:
        """Put a claimed page back in the queue (its engines may recover); the attempts stay recorded."""
        self.forget(claim.page_id)
        with self.sessions.begin() as session:
            connection = session.connection()
            if attempts:
                connection.execute(
                    insert(Attempt), [a.as_row() | {"page_id": claim.page_id} for a in attempts]
                )
            connection.execute(
                update(Page)
                .where(Page.id == claim.page_id, Page.status == PageStatus.RUNNING)
                .values(
                    status=PageStatus.QUEUED, started_at=None, lease_expires_at=None, enqueued_at=utcnow()
                )
            )

    def fail_document(self, document_id: int, error: OcrqError) -> None:
        with self.sessions.begin() as session:
            document = session.get_one(Document, document_id)
            document.status, document.finished_at = DocumentStatus.FAILED, utcnow()
            document.error_code, document.error_message = error.code, error.message
            self._finalize_job_of(session, document_id)

    def finalize_document(self, document_id: int) -> None:
        """Close a document whose pages are all finished already (e.g. all reused)."""
        with self.sessions.begin() as session:
            self._close_if_complete(session, document_id)

    def cancel_job(self, job_id: int) -> bool:
        """Queued pages and unfinished documents are cancelled; running pages still finish and count."""
        with self.sessions.begin() as session:
            cancelled = rows_changed(
                session,
                update(Job)
                .where(Job.id == job_id, Job.finished_at.is_(None))
                .values(status=JobStatus.CANCELLED, finished_at=utcnow()),
            )
            if not cancelled:
                return False
            documents = select(Document.id).where(Document.job_id == job_id)
            session.execute(
                update(Page)
                .where(Page.document_id.in_(documents), Page.status == PageStatus.QUEUED)
                .values(status=PageStatus.CANCELLED)
            )
            session.execute(
                update(Document)
                .where(Document.job_id == job_id, Document.status.not_in(FINISHED_DOCUMENT))
                .values(status=DocumentStatus.CANCELLED, finished_at=utcnow())
            )
            return True

    def interrupt_job(self, job_id: int) -> bool:
        """Close a job its runner gave up on (Ctrl-C): its pages in hand go back to ``queued``.

        A job that finished meanwhile keeps its status; returns True when this call closed it.
        """
        with self.sessions.begin() as session:
            documents = select(Document.id).where(Document.job_id == job_id)
            session.execute(
                update(Page)
                .where(Page.document_id.in_(documents), Page.status == PageStatus.RUNNING)
                .values(status=PageStatus.QUEUED, started_at=None, lease_expires_at=None)
            )
            return bool(
                rows_changed(
                    session,
                    update(Job)
                    .where(Job.id == job_id, Job.finished_at.is_(None))
                    .values(status=JobStatus.INTERRUPTED, finished_at=utcnow()),
                )
            )

    def fail_open_documents(self, job_id: int, error: OcrqError) -> None:
        """The job as a whole cannot go on (no engine, a bug): its open documents fail with the reason."""
        with self.sessions() as session:
            open_ids = session.scalars(
                select(Document.id).where(
                    Document.job_id == job_id, Document.status.not_in(FINISHED_DOCUMENT)
                )
            ).all()
        for document_id in open_ids:
            self.fail_document(document_id, error)

    def start_job(self, job_id: int) -> None:
        with self.sessions.begin() as session:
            _start_job(session, job_id)

    def _close_if_complete(self, session: Session, document_id: int) -> None:
        if _finalize_document(session, document_id):
            _explain_page_failures(session, document_id)
            _flag_page_warnings(session, document_id)
            self._finalize_job_of(session, document_id)

    def _finalize_job_of(self, session: Session, document_id: int) -> None:
        job_id = session.scalars(select(Document.job_id).where(Document.id == document_id)).one()
        finalize_job(session, job_id)


def _start_job(connection: Connection | Session, job_id: int) -> None:
    connection.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.RUNNING, started_at=utcnow())
    )


def _start_document(connection: Connection, document_id: int, job_id: int) -> None:
    connection.execute(
        update(Document)
        .where(Document.id == document_id, Document.status == DocumentStatus.QUEUED)
        .values(status=DocumentStatus.RUNNING)
    )
    _start_job(connection, job_id)


def _page_values(finish: PageFinish) -> dict[str, object]:
    values: dict[str, object] = {"finished_at": utcnow(), "render_ms": finish.render_ms}
    if finish.size:
        values["width"], values["height"] = finish.size
    if finish.error is not None:
        return values | {
            "status": PageStatus.FAILED,
            "error_code": finish.error.code,
            "error_message": finish.error.message,
        }
    result = finish.result
    assert result is not None
    return values | {
        "status": PageStatus.DONE,
        "text": result.text,
        "markdown": result.markdown,
        "cells": result.cells_json(),
        "engine": result.engine,
        "model": result.model,
        "ocr_ms": result.ocr_ms,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "notes": result.notes_json() or None,
    }


def _count_page(connection: Connection, document_id: int, *, ok: bool) -> bool:
    """Count the page; True when that was the document's last one."""
    column = Document.pages_done if ok else Document.pages_failed
    counted = connection.execute(
        update(Document)
        .where(Document.id == document_id)
        .values({column: column + 1})
        .returning(Document.pages_done + Document.pages_failed, Document.page_count)
    ).one()
    return counted[0] >= counted[1]


def _finalize_document(session: Session, document_id: int) -> bool:
    """Set the final status once every page is counted; True if this call did it."""
    status = case(
        (Document.pages_failed == 0, DocumentStatus.DONE.value),
        (Document.pages_done == 0, DocumentStatus.FAILED.value),
        else_=DocumentStatus.PARTIAL.value,
    )
    return bool(
        rows_changed(
            session,
            update(Document)
            .where(
                Document.id == document_id,
                Document.status.not_in(FINISHED_DOCUMENT),
                Document.pages_done + Document.pages_failed >= Document.page_count,
            )
            .values(status=status, finished_at=utcnow()),
        )
    )


def _explain_page_failures(session: Session, document_id: int) -> None:
    """Give a failed or partial document the code of its first failed page and a count."""
    document = session.get_one(Document, document_id)
    if document.pages_failed == 0 or document.error_code:
        return
    first = session.scalars(
        select(Page)
        .where(Page.document_id == document_id, Page.status == PageStatus.FAILED)
        .order_by(Page.index)
        .limit(1)
    ).one()
    document.error_code = first.error_code
    document.error_message = (
        f"{document.pages_failed} of {document.page_count} page(s) failed; "
        f"first, page {first.index + 1}: {first.error_message}"
    )


def _flag_page_warnings(session: Session, document_id: int) -> None:
    """A document whose pages were read with content lost (a warning note) is partial, never done.

    It takes the first warning's code and lists the pages, unless a failed page already explains it.
    """
    warned = _warned_pages(session, document_id)
    document = session.get_one(Document, document_id)
    if not warned or document.status == DocumentStatus.FAILED:
        return
    document.status = DocumentStatus.PARTIAL
    if document.error_code:
        return
    first_index, first = warned[0]
    pages = ", ".join(str(index + 1) for index, _ in warned)
    document.error_code = first["code"]
    document.error_message = (
        f"{len(warned)} of {document.page_count} page(s) read with content possibly lost "
        f"(pages {pages}); first, page {first_index + 1}: {first['message']}"
    )


def _warned_pages(session: Session, document_id: int) -> list[tuple[int, dict[str, Any]]]:
    rows = session.execute(
        select(Page.index, Page.notes)
        .where(Page.document_id == document_id, Page.status == PageStatus.DONE, Page.notes.is_not(None))
        .order_by(Page.index)
    ).all()
    warned = []
    for index, notes in rows:
        first = next((note for note in notes or [] if note.get("warning")), None)
        if first is not None:
            warned.append((index, first))
    return warned


def finalize_job(session: Session, job_id: int) -> bool:
    """Close the job when no document is left open; its status summarises the documents.

    The job row is locked first: a second transaction finishing another
    document of the job waits here, then counts again with this one's
    document committed. Returns True when this call closed the job.
    """
    _lock_job(session, job_id)
    counts = dict(
        session.execute(
            select(Document.status, func.count()).where(Document.job_id == job_id).group_by(Document.status)
        ).all()
    )
    if any(status not in FINISHED_DOCUMENT for status in counts):
        return False
    return bool(
        rows_changed(
            session,
            update(Job)
            .where(Job.id == job_id, Job.finished_at.is_(None))
            .values(status=_job_status(counts), finished_at=utcnow()),
        )
    )


def _lock_job(session: Session, job_id: int) -> None:
    """``SELECT ... FOR NO KEY UPDATE`` on Postgres (a plain FOR UPDATE deadlocks against the key-share
    locks of the document updates); SQLite serialises writers anyway (the clause is dropped)."""
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update(key_share=True))


def _job_status(counts: dict[str, int]) -> JobStatus:
    if set(counts) <= {DocumentStatus.DONE}:
        return JobStatus.DONE
    if set(counts) <= {DocumentStatus.FAILED}:
        return JobStatus.FAILED
    return JobStatus.PARTIAL
