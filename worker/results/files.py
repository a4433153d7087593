"""Result files: ``<relpath>.md``, ``.json`` and the other formats per document, and ``batch.json``.

Everything is read back from the database, so ``--out`` can be written (or
rewritten) after the fact from any job.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.fs_text import shown
from ocrq.db.models import Document, Job, Page
from ocrq.jobs.degraded import degraded_by_document
from ocrq.redaction import hide_server_paths
from ocrq.schemas import PageStatus
from ocrq.settings import Settings
from ocrq.worker.results.formats import write_document_formats

PAGES_PER_FETCH = 200


def write_job_outputs(
    sessions: sessionmaker[Session],
    job_id: int,
    out_dir: Path,
    settings: Settings,
    *,
    for_client: bool = False,
) -> dict[str, Any]:
    """Write every document's files and ``batch.json``; returns the batch summary written.

    ``for_client`` (the API's zip) leaves this server's paths out: no ``source``,
    outputs relative to ``out_dir``, error messages naming the client's paths.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with sessions() as session:
        job = session.get_one(Job, job_id)
        degraded = degraded_by_document(session, [job_id])
        entries = [
            _write_document(session, doc, out_dir, settings, for_client) | _degraded_entry(doc, degraded)
            for doc in job.documents
        ]
        batch = _batch_summary(session, job, entries)
    _write_json(out_dir / "batch.json", batch)
    return batch


def _write_document(
    session: Session, document: Document, out_dir: Path, settings: Settings, for_client: bool = False
) -> dict[str, Any]:
    """Pages are streamed from the database to the files, so a 10,000-page document never sits in memory."""
    entry = document_entry(document, for_client=for_client)
    client_of = document if for_client else None
    target = out_dir / document.relpath
    outputs: dict[str, str] = {}
    if settings.wants("json"):
        outputs["json"] = _write_stream(
            Path(f"{target}.json"), document_json_parts(entry, document_pages(session, document), client_of)
        )
    if settings.wants("md") and document.pages_done:
        outputs["md"] = _write_stream(Path(f"{target}.md"), markdown_parts(document_pages(session, document)))
    formats, errors = write_document_formats(session, document, target, settings)
    outputs |= formats
    if for_client:
        outputs = {kind: Path(path).relative_to(out_dir).as_posix() for kind, path in outputs.items()}
        errors = {kind: _client_error(error, document) for kind, error in errors.items()}
    return entry | {"outputs": outputs, "output_errors": errors}


def _client_error(error: dict[str, str], document: Document) -> dict[str, str]:
    """A result format's error as an API client may read it: no path of this server in it."""
    return error | {"message": hide_server_paths(error["message"], document.path, document.relpath) or ""}


def document_pages(session: Session, document: Document) -> Iterator[Page]:
    """In index order, a batch at a time, each page let go once written."""
    query = select(Page).where(Page.document_id == document.id).order_by(Page.index)
    for page in session.scalars(query.execution_options(yield_per=PAGES_PER_FETCH)):
        yield page
        session.expunge(page)


def document_json_parts(
    entry: dict[str, Any], pages: Iterable[Page], client_of: Document | None = None
) -> Iterator[str]:
    yield _dumps(entry)[: -len("\n}")] + ',\n  "pages": ['
    for number, page in enumerate(pages):
        yield ("," if number else "") + "\n    " + json.dumps(page_entry(page, client_of), ensure_ascii=False)
    yield "\n  ]\n}\n"


def document_entry(document: Document, *, for_client: bool = False) -> dict[str, Any]:
    """``for_client``: without ``source`` and with the client's paths in the error (API readers)."""
    message = document.error_message
    if for_client:
        message = hide_server_paths(message, document.path, document.relpath)
    entry = {
        "path": document.relpath,
        "source": shown(document.path),
        "status": document.status,
        "type": document.detected_type,
        "sha256": document.sha256,
        "size_bytes": document.size_bytes,
        "pages": document.page_count,
        "pages_done": document.pages_done,
        "pages_failed": document.pages_failed,
        "error": _error(document.error_code, message),
    }
    if for_client:
        entry.pop("source")
    return entry


def page_entry(page: Page, client_of: Document | None = None) -> dict[str, Any]:
    """With ``client_of`` (the page's document) its error names the client's paths, not the server's."""
    message = page.error_message
    if client_of is not None:
        message = hide_server_paths(message, client_of.path, client_of.relpath)
    error = _error(page.error_code, message)
    return {
        "index": page.index,
        "status": page.status,
        "width": page.width,
        "height": page.height,
        "engine": page.engine,
        "model": page.model,
        "reused": page.reused,
        "text": page.text,
        "markdown": page.markdown,
        "cells": page.cells or [],
        "notes": page.notes or [],
        "error": error,
        "timings": {
            "queued_at": _iso(page.queued_at),
            "started_at": _iso(page.started_at),
            "finished_at": _iso(page.finished_at),
            "render_ms": page.render_ms,
            "ocr_ms": page.ocr_ms,
        },
        "tokens": {"in": page.tokens_in, "out": page.tokens_out},
    }


def document_markdown(pages: Iterable[Page]) -> str:
    return "".join(markdown_parts(pages))


def markdown_parts(pages: Iterable[Page]) -> Iterator[str]:
    for number, page in enumerate(pages):
        failed = f"<!-- page failed: {page.error_code} -->"
        body = (page.markdown or "").strip() if page.status == PageStatus.DONE else failed
        warnings = "".join(
            f"<!-- warning: {note['code']}: {note['message']} -->\n\n" for note in _warnings(page)
        )
        yield ("\n\n" if number else "") + f"<!-- page {page.index + 1} -->\n\n" + warnings + body
    yield "\n"


def _warnings(page: Page) -> list[dict[str, Any]]:
    """Notes saying the page may have lost content: shown where a reader of the Markdown looks."""
    return [note for note in page.notes or [] if note.get("warning")]


def job_summary(sessions: sessionmaker[Session], job_id: int) -> dict[str, Any]:
    """What ``batch.json`` says, without writing anything: for ``ocrq status`` and the API."""
    with sessions() as session:
        job = session.get_one(Job, job_id)
        degraded = degraded_by_document(session, [job_id])
        entries = [document_entry(doc) | _degraded_entry(doc, degraded) for doc in job.documents]
        return _batch_summary(session, job, entries)


def _degraded_entry(document: Document, degraded: dict[int, int]) -> dict[str, int]:
    """Pages of the document read by a fallback engine (done, but weaker than the primary's)."""
    return {"pages_degraded": degraded.get(document.id, 0)}


def _batch_summary(session: Session, job: Job, entries: list[dict[str, Any]]) -> dict[str, Any]:
    engines = Counter(
        session.scalars(
            select(Page.engine)
            .join(Document)
            .where(Document.job_id == job.id, Page.status == PageStatus.DONE)
        )
    )
    return {
        "job_id": job.id,
        "status": job.status,
        "origin": job.origin,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "settings": job.settings,
        "primary_engine": job.primary_engine,
        "counts": {
            "documents": dict(Counter(e["status"] for e in entries)),
            "pages": _page_counts(entries),
            "engines": dict(engines),
        },
        "documents": entries,
    }


def _page_counts(entries: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "total": sum(e["pages"] for e in entries),
        "done": sum(e["pages_done"] for e in entries),
        "failed": sum(e["pages_failed"] for e in entries),
        "degraded": sum(e.get("pages_degraded", 0) for e in entries),
    }


def _error(code: str | None, message: str | None) -> dict[str, str | None] | None:
    return {"code": code, "message": message} if code else None


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment else None


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, indent=2)


def _write_json(path: Path, payload: Any) -> str:
    return _write_stream(path, [_dumps(payload) + "\n"])


def _write_stream(path: Path, parts: Iterable[str]) -> str:
    """Write through a temporary file so a reader never sees half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as stream:
        stream.writelines(parts)
    os.replace(partial, path)
    return str(path)
