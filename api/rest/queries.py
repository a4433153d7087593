"""Reading jobs, documents and pages for the API, in the shapes of :mod:`ocrq.api.rest.schemas`.

Job details reuse :func:`ocrq.worker.results.files.job_summary` (the ``batch.json``
summary); lists aggregate in SQL so a page of jobs costs two queries, not one
per job.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.schemas import (
    DocumentError,
    DocumentLinks,
    DocumentPublic,
    JobCounts,
    JobDetail,
    JobLinks,
    JobPublic,
    PageCounts,
    PagePublic,
    WebhookAttempt,
    WebhookState,
)
from ocrq.db.models import Document, Job, Page, WebhookDelivery
from ocrq.errors import ResourceNotFound
from ocrq.worker.results.files import document_entry, job_summary, page_entry


def job_links(job_id: int) -> JobLinks:
    base = f"/v1/jobs/{job_id}"
    return JobLinks(self=base, documents=f"{base}/documents", result=f"{base}/result")


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise ResourceNotFound(f"no job {job_id}")
    return job


def is_finished(sessions: sessionmaker[Session], job_id: int) -> bool:
    with sessions() as session:
        return get_job(session, job_id).finished_at is not None


def list_jobs(
    sessions: sessionmaker[Session], status: str | None, limit: int, offset: int
) -> tuple[list[JobPublic], int]:
    """Newest first."""
    where = [Job.status == status] if status else []
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
        jobs = session.scalars(
            select(Job).where(*where).order_by(Job.id.desc()).limit(limit).offset(offset)
        ).all()
        counts = _counts_of(session, [job.id for job in jobs])
        return [_job_public(job, counts[job.id]) for job in jobs], total


def _counts_of(session: Session, job_ids: list[int]) -> dict[int, JobCounts]:
    documents, pages = _document_counts(session, job_ids), _page_counts(session, job_ids)
    empty = PageCounts(total=0, done=0, failed=0)
    return {i: JobCounts(documents=documents[i], pages=pages.get(i, empty)) for i in job_ids}


def _document_counts(session: Session, job_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for job_id, status, count in session.execute(
        select(Document.job_id, Document.status, func.count())
        .where(Document.job_id.in_(job_ids))
        .group_by(Document.job_id, Document.status)
    ):
        counts[job_id][status] = count
    return counts


def _page_counts(session: Session, job_ids: list[int]) -> dict[int, PageCounts]:
    rows = session.execute(
        select(
            Document.job_id,
            func.coalesce(func.sum(Document.page_count), 0),
            func.coalesce(func.sum(Document.pages_done), 0),
            func.coalesce(func.sum(Document.pages_failed), 0),
        )
        .where(Document.job_id.in_(job_ids))
        .group_by(Document.job_id)
    )
    return {job_id: PageCounts(total=total, done=done, failed=failed) for job_id, total, done, failed in rows}


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "origin": job.origin,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "links": job_links(job.id),
    }


def _job_public(job: Job, counts: JobCounts) -> JobPublic:
    return JobPublic(**_job_fields(job), counts=counts)


def job_detail(sessions: sessionmaker[Session], job_id: int) -> JobDetail:
    """Status, counts, timings, per-document errors and the webhook's deliveries.

    The counts are read first, so the status read after them is never older.
    """
    with sessions() as session:
        get_job(session, job_id)  # 404 before job_summary, which expects the job to exist
    summary = job_summary(sessions, job_id)
    counts = summary["counts"]
    with sessions() as session:
        job = get_job(session, job_id)
        return JobDetail(
            **_job_fields(job),
            counts=JobCounts(
                documents=counts["documents"], pages=PageCounts(**counts["pages"]), engines=counts["engines"]
            ),
            settings=summary["settings"],
            errors=_document_errors(session, job_id),
            webhook=_webhook(session, job),
        )


def _document_errors(session: Session, job_id: int) -> list[DocumentError]:
    rows = session.scalars(
        select(Document)
        .where(Document.job_id == job_id, Document.error_code.is_not(None))
        .order_by(Document.id)
    )
    return [
        DocumentError(
            document_id=d.id,
            path=d.relpath,
            status=d.status,
            code=d.error_code or "",
            message=d.error_message,
        )
        for d in rows
    ]


def _webhook(session: Session, job: Job) -> WebhookState | None:
    if not job.callback_url:
        return None
    deliveries = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job.id).order_by(WebhookDelivery.id)
    )
    attempts = [
        WebhookAttempt(
            attempt=d.attempt,
            started_at=d.started_at,
            duration_ms=d.duration_ms,
            status_code=d.status_code,
            outcome=d.outcome,
            error=d.error,
        )
        for d in deliveries
    ]
    return WebhookState(url=job.callback_url, status=job.webhook_status, deliveries=attempts)


def list_documents(
    sessions: sessionmaker[Session], job_id: int, limit: int, offset: int
) -> tuple[list[DocumentPublic], int]:
    with sessions() as session:
        get_job(session, job_id)
        total = (
            session.scalar(select(func.count()).select_from(Document).where(Document.job_id == job_id)) or 0
        )
        rows = session.scalars(
            select(Document)
            .where(Document.job_id == job_id)
            .order_by(Document.id)
            .limit(limit)
            .offset(offset)
        )
        return [document_public(d) for d in rows], total


def document_public(document: Document) -> DocumentPublic:
    entry: dict[str, Any] = document_entry(document)
    entry.pop("source")  # the server-side path is the server's business
    base = f"/v1/documents/{document.id}"
    links = DocumentLinks(self=base, job=f"/v1/jobs/{document.job_id}", pages=f"{base}/pages/")
    return DocumentPublic(id=document.id, job_id=document.job_id, links=links, **entry)


def get_document(sessions: sessionmaker[Session], document_id: int) -> DocumentPublic:
    with sessions() as session:
        document = session.get(Document, document_id)
        if document is None:
            raise ResourceNotFound(f"no document {document_id}")
        return document_public(document)


def get_page(sessions: sessionmaker[Session], document_id: int, number: int) -> PagePublic:
    """``number`` is 1-based, like the ``<!-- page N -->`` markers in the Markdown."""
    with sessions() as session:
        page = session.scalar(select(Page).where(Page.document_id == document_id, Page.index == number - 1))
        if page is None:
            raise ResourceNotFound(f"no page {number} in document {document_id}")
        return PagePublic(document_id=document_id, number=number, **page_entry(page))
