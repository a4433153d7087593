"""A finished job's results, streamed: Markdown, JSON, JSON Lines, or a zip of the result files.

Each format is produced document by document from the database, so a job of
thousands of documents never sits whole in memory. The zip holds exactly what
``ocrq results --out`` writes (:func:`ocrq.worker.results.files.write_job_outputs`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.queries import get_job, visible_documents
from ocrq.api.rest.schemas import ResultFormat
from ocrq.db.models import Document, Page
from ocrq.jobs.access import Caller
from ocrq.settings import Settings
from ocrq.worker.results.files import (
    document_entry,
    document_markdown,
    job_summary,
    page_entry,
    write_job_outputs,
)

CHUNK_BYTES = 256 * 1024
MEDIA_TYPES: dict[str, str] = {
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "zip": "application/zip",
}


def stream_result(
    sessions: sessionmaker[Session], settings: Settings, caller: Caller, job_id: int, fmt: ResultFormat
) -> Iterator[bytes]:
    """Checks, before any byte is produced, that the caller may see the job (404 otherwise)."""
    with sessions() as session:
        get_job(session, caller, job_id)
    producers = {"md": _markdown, "json": _json, "jsonl": _jsonl}
    if fmt == "zip":
        return _zip(sessions, settings, job_id)
    return (part.encode() for part in producers[fmt](sessions, caller, job_id))


def _document_ids(sessions: sessionmaker[Session], caller: Caller, job_id: int) -> list[int]:
    with sessions() as session:
        query = visible_documents(caller).where(Document.job_id == job_id).order_by(Document.id)
        return [document.id for document in session.scalars(query)]


def _document_with_pages(sessions: sessionmaker[Session], document_id: int) -> tuple[Document, list[Page]]:
    with sessions() as session:
        document = session.get_one(Document, document_id)
        pages = session.scalars(
            select(Page).where(Page.document_id == document_id).order_by(Page.index)
        ).all()
        return document, list(pages)


def _document_json(sessions: sessionmaker[Session], document_id: int) -> dict[str, Any]:
    """The per-document JSON file's content, plus the document's API id."""
    document, pages = _document_with_pages(sessions, document_id)
    entry = document_entry(document, for_client=True)
    return {"id": document.id} | entry | {"pages": [page_entry(p, document) for p in pages]}


def _markdown(sessions: sessionmaker[Session], caller: Caller, job_id: int) -> Iterator[str]:
    for document_id in _document_ids(sessions, caller, job_id):
        document, pages = _document_with_pages(sessions, document_id)
        yield f"<!-- document: {document.relpath} ({document.status}) -->\n\n"
        yield (document_markdown(pages) if pages else f"<!-- no pages: {document.error_code} -->\n") + "\n"


def _jsonl(sessions: sessionmaker[Session], caller: Caller, job_id: int) -> Iterator[str]:
    for document_id in _document_ids(sessions, caller, job_id):
        yield json.dumps(_document_json(sessions, document_id), ensure_ascii=False) + "\n"


def _json(sessions: sessionmaker[Session], caller: Caller, job_id: int) -> Iterator[str]:
    """``batch.json``'s shape, each document carrying its pages."""
    summary = job_summary(sessions, job_id)
    summary.pop("documents")
    yield json.dumps(summary, ensure_ascii=False)[:-1] + ', "documents": ['
    for number, document_id in enumerate(_document_ids(sessions, caller, job_id)):
        yield ("," if number else "") + json.dumps(_document_json(sessions, document_id), ensure_ascii=False)
    yield "]}\n"


def _zip(sessions: sessionmaker[Session], settings: Settings, job_id: int) -> Iterator[bytes]:
    """Result files written to a scratch folder, zipped to a spooled file, then sent in chunks."""
    scratch = Path(tempfile.mkdtemp(prefix=f"ocrq-job-{job_id}-"))
    try:
        write_job_outputs(sessions, job_id, scratch, settings, for_client=True)
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as archive:
            _zip_folder(scratch, archive)
            archive.seek(0)
            while chunk := archive.read(CHUNK_BYTES):
                yield chunk
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _zip_folder(folder: Path, archive: IO[bytes]) -> None:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, path.relative_to(folder).as_posix())
