"""Degraded pages: done, but read by an engine other than the job's primary one.

A fallback engine (Tesseract behind dots.ocr) is much weaker, so a page it read
must not hide inside ``done``. The job records its primary engine when a runner
or worker first builds the chain for it; from then on a done page whose engine
differs is degraded, counted everywhere a job is shown, and can be read again
(:func:`replace_degraded_result`) without losing its current result meanwhile.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Attempt, Document, Job, Page, utcnow
from ocrq.db.session import rows_changed
from ocrq.schemas import PageResult, PageStatus


def record_primary_engine(
    sessions: sessionmaker[Session], job_id: int, engine: str, preference: list[str] | None = None
) -> None:
    """Name the job's primary engine: the first chain built for it does, and a worker whose chain
    starts with an engine ranked higher in ``preference`` (the job's ``OCRQ_ENGINES``) takes over,
    so a host without vLLM cannot make vLLM's pages look degraded. Compare-and-set: concurrent
    workers agree on the best one."""
    rank = {name: position for position, name in enumerate(preference or [engine])}
    with sessions.begin() as session:
        current = session.scalar(select(Job.primary_engine).where(Job.id == job_id))
        if current is not None and rank.get(engine, len(rank)) >= rank.get(current, len(rank)):
            return
        unchanged = Job.primary_engine.is_(None) if current is None else Job.primary_engine == current
        session.execute(update(Job).where(Job.id == job_id, unchanged).values(primary_engine=engine))


EXACT_ENGINES = ("text_layer",)
"""Engines that copy a page's own text instead of guessing it: never a weaker reading than the primary."""


def is_degraded() -> ColumnElement[bool]:
    """For a query joining pages to their job: the page was read by a fallback engine."""
    return and_(
        Page.status == PageStatus.DONE,
        Job.primary_engine.is_not(None),
        Page.engine != Job.primary_engine,
        Page.engine.not_in(EXACT_ENGINES),
    )


def degraded_by_document(session: Session, job_ids: list[int]) -> dict[int, int]:
    """Degraded pages per document of the given jobs (documents without any are left out)."""
    rows = session.execute(
        select(Page.document_id, func.count())
        .join(Document, Page.document_id == Document.id)
        .join(Job, Document.job_id == Job.id)
        .where(Job.id.in_(job_ids), is_degraded())
        .group_by(Page.document_id)
    )
    return {int(key): int(count) for key, count in rows}


def degraded_by_job(session: Session, job_ids: list[int]) -> dict[int, int]:
    rows = session.execute(
        select(Job.id, func.count())
        .select_from(Page)
        .join(Document, Page.document_id == Document.id)
        .join(Job, Document.job_id == Job.id)
        .where(Job.id.in_(job_ids), is_degraded())
        .group_by(Job.id)
    )
    return {int(key): int(count) for key, count in rows}


def degraded_page_ids(session: Session, job_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Page.id)
            .join(Document, Page.document_id == Document.id)
            .join(Job, Document.job_id == Job.id)
            .where(Job.id == job_id, is_degraded())
            .order_by(Page.document_id, Page.index)
        )
    )


def replace_degraded_result(
    sessions: sessionmaker[Session], page_id: int, result: PageResult | None, attempts: list[dict[str, Any]]
) -> bool:
    """Store a redo's attempts, and its result if there is one and the page is still degraded.

    The page stays ``done`` throughout: its fallback result is what readers see
    until the primary engine's result replaces it in one UPDATE. Replaying a
    redo is harmless (a page no longer degraded is left alone).
    """
    with sessions.begin() as session:
        if attempts:
            session.execute(insert(Attempt), [row | {"page_id": page_id} for row in attempts])
        if result is None:
            return False
        primary = select(Job.primary_engine).join(Document).where(Document.id == Page.document_id)
        still_degraded = Page.engine != primary.scalar_subquery()
        changed = rows_changed(
            session,
            update(Page)
            .where(Page.id == page_id, Page.status == PageStatus.DONE, still_degraded)
            .values(**_result_values(result)),
        )
        return bool(changed)


def _result_values(result: PageResult) -> dict[str, object]:
    return {
        "text": result.text,
        "markdown": result.markdown,
        "cells": result.cells_json(),
        "engine": result.engine,
        "model": result.model,
        "ocr_ms": result.ocr_ms,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "reused": False,
        "finished_at": utcnow(),
    }
