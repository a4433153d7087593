"""Reading jobs, documents and pages for the API, in the shapes of :mod:`ocrq.api.rest.schemas`.

Every function takes the :class:`~ocrq.jobs.access.Caller` and filters by it in
SQL (:func:`~ocrq.jobs.access.visible_jobs`): another key's job, document or
page is not found, exactly like one that does not exist. Job details reuse
:func:`ocrq.worker.results.files.job_summary` (the ``batch.json`` summary); lists
aggregate in SQL so a page of jobs costs two queries, not one per job.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, cast

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from ocrq.api.rest.schemas import (
    AttemptPublic,
    DocumentError,
    DocumentLinks,
    DocumentPublic,
    JobCounts,
    JobDetail,
    JobLinks,
    JobPublic,
    PageCounts,
    PagePublic,
    PageSummary,
    WebhookAttempt,
    WebhookOutcome,
    WebhookState,
)
from ocrq.db.models import Attempt, Document, Job, Page, WebhookDelivery
from ocrq.errors import ResourceNotFound
from ocrq.jobs.access import Caller, visible_jobs
from ocrq.jobs.degraded import degraded_by_document, degraded_by_job
from ocrq.redaction import hide_server_paths, mask_url
from ocrq.worker.results.files import document_entry, job_summary, page_entry


def job_links(job_id: int, origin: str = "") -> JobLinks:
    """Relative links, or absolute ones under ``origin`` (``OCRQ_API_PUBLIC_URL``, for webhooks)."""
    base = f"{origin.rstrip('/')}/v1/jobs/{job_id}"
    return JobLinks(self=base, documents=f"{base}/documents", result=f"{base}/result")


def get_job(session: Session, caller: Caller, job_id: int) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, visible_jobs(caller)))
    if job is None:
        raise ResourceNotFound(f"no job {job_id}")
    return job


def is_finished(sessions: sessionmaker[Session], caller: Caller, job_id: int) -> bool:
    with sessions() as session:
        return get_job(session, caller, job_id).finished_at is not None


def visible_documents(caller: Caller) -> Select[Document]:
    """Documents of the jobs the caller may see."""
    return select(Document).join(Job, Document.job_id == Job.id).where(visible_jobs(caller))


def list_jobs(
    sessions: sessionmaker[Session], caller: Caller, status: str | None, limit: int, offset: int
) -> tuple[list[JobPublic], int]:
    """Newest first."""
    where = [visible_jobs(caller), *([Job.status == status] if status else [])]
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
    degraded = degraded_by_job(session, job_ids)
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
    return {
        job_id: PageCounts(total=total, done=done, failed=failed, degraded=degraded.get(job_id, 0))
        for job_id, total, done, failed in rows
    }


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


def job_detail(sessions: sessionmaker[Session], caller: Caller, job_id: int, origin: str = "") -> JobDetail:
    """Status, counts, timings, per-document errors and the webhook's deliveries.

    The counts are read first, so the status read after them is never older.
    """
    with sessions() as session:
        get_job(session, caller, job_id)  # 404 before job_summary, which expects the job to exist
    summary = job_summary(sessions, job_id)
    counts = summary["counts"]
    with sessions() as session:
        job = get_job(session, caller, job_id)
        return JobDetail(
            **(_job_fields(job) | {"links": job_links(job.id, origin)}),
            counts=JobCounts(
                documents=counts["documents"], pages=PageCounts(**counts["pages"]), engines=counts["engines"]
            ),
            settings=summary["settings"],
            primary_engine=summary["primary_engine"],
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
            message=hide_server_paths(d.error_message, d.path, d.relpath),
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
            outcome=cast(WebhookOutcome, d.outcome),
        )
        for d in deliveries
    ]
    return WebhookState(url=mask_url(job.callback_url), status=job.webhook_status, deliveries=attempts)


def list_documents(
    sessions: sessionmaker[Session], caller: Caller, job_id: int, limit: int, offset: int
) -> tuple[list[DocumentPublic], int]:
    """The job's documents in submission order (404 for a job the caller may not see)."""
    with sessions() as session:
        get_job(session, caller, job_id)
        of_job = visible_documents(caller).where(Document.job_id == job_id)
        total = session.scalar(select(func.count()).select_from(of_job.subquery())) or 0
        rows = session.scalars(of_job.order_by(Document.id).limit(limit).offset(offset)).all()
        degraded = degraded_by_document(session, [job_id])
        return [document_public(d, degraded.get(d.id, 0)) for d in rows], total


def document_public(document: Document, degraded: int = 0) -> DocumentPublic:
    base = f"/v1/documents/{document.id}"
    links = DocumentLinks(self=base, job=f"/v1/jobs/{document.job_id}", pages=f"{base}/pages")
    entry = document_entry(document, for_client=True)
    return DocumentPublic(
        id=document.id, job_id=document.job_id, links=links, pages_degraded=degraded, **entry
    )


def get_visible_document(session: Session, caller: Caller, document_id: int) -> Document:
    document = session.scalar(visible_documents(caller).where(Document.id == document_id))
    if document is None:
        raise ResourceNotFound(f"no document {document_id}")
    return document


def get_document(sessions: sessionmaker[Session], caller: Caller, document_id: int) -> DocumentPublic:
    with sessions() as session:
        document = get_visible_document(session, caller, document_id)
        degraded = degraded_by_document(session, [document.job_id]).get(document.id, 0)
        return document_public(document, degraded)


def get_page(sessions: sessionmaker[Session], caller: Caller, document_id: int, number: int) -> PagePublic:
    """``number`` is 1-based, like the ``<!-- page N -->`` markers in the Markdown."""
    with sessions() as session:
        document = get_visible_document(session, caller, document_id)
        page = session.scalar(select(Page).where(Page.document_id == document_id, Page.index == number - 1))
        if page is None:
            raise ResourceNotFound(f"no page {number} in document {document_id}")
        attempts = [_attempt_public(attempt) for attempt in page.attempts]
        return PagePublic(
            document_id=document_id, number=number, attempts=attempts, **page_entry(page, document)
        )


def _attempt_public(attempt: Attempt) -> AttemptPublic:
    return AttemptPublic(
        engine=attempt.engine,
        model=attempt.model,
        started_at=attempt.started_at,
        duration_ms=attempt.duration_ms,
        outcome=attempt.outcome,
        error_code=attempt.error_code,
    )


def list_pages(
    sessions: sessionmaker[Session], caller: Caller, document_id: int, limit: int, offset: int
) -> tuple[list[PageSummary], int]:
    """A document's pages in order with their attempts (404 for a document the caller may not see)."""
    with sessions() as session:
        document = get_visible_document(session, caller, document_id)
        total = session.scalar(select(func.count()).where(Page.document_id == document_id)) or 0
        pages = session.scalars(
            select(Page)
            .where(Page.document_id == document_id)
            .order_by(Page.index)
            .limit(limit)
            .offset(offset)
            .options(selectinload(Page.attempts))
        ).all()
        return [_page_summary(page, document) for page in pages], total


def _page_summary(page: Page, document: Document) -> PageSummary:
    entry = page_entry(page, document)
    return PageSummary(
        number=page.index + 1,
        status=page.status,
        engine=page.engine,
        reused=page.reused,
        error=entry["error"],
        attempts=[_attempt_public(attempt) for attempt in page.attempts],
        self=f"/v1/documents/{document.id}/pages/{page.index + 1}",
    )
