"""One document's results over the API, in every format, and the layout picture of one page.

Text formats stream from the database page by page; the searchable PDF is written to a scratch
file (it needs the source document, as ``--out`` does) and sent in chunks, then deleted. A layout
picture is drawn on request from the source page, so nothing extra is stored.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.queries import get_visible_document
from ocrq.db.models import Document, Page
from ocrq.errors import JobNotFinished, OutputError, ResourceNotFound
from ocrq.jobs.access import Caller
from ocrq.redaction import hide_server_paths
from ocrq.settings import Settings
from ocrq.worker.results.files import document_entry, document_json_parts, document_pages, markdown_parts
from ocrq.worker.results.formats import alto_parts, page_picture, searchable_pdf_to, text_parts

DocumentFormat = Literal["md", "json", "txt", "alto", "pdf"]
CHUNK_BYTES = 256 * 1024
DOCUMENT_MEDIA_TYPES: dict[str, str] = {
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "alto": "application/xml",
    "pdf": "application/pdf",
}
FILE_SUFFIXES = {"md": ".md", "json": ".json", "txt": ".txt", "alto": ".alto.xml", "pdf": ".pdf"}


def finished_document(sessions: sessionmaker[Session], caller: Caller, document_id: int) -> str:
    """The document's file name; 404 when unknown or another tenant's, 409 while still being read.

    The caller is checked here, before the response starts: the body's producers run later.
    """
    with sessions() as session:
        document = get_visible_document(session, caller, document_id)
        if document.finished_at is None:
            raise JobNotFinished(f"document {document_id} is still being read")
        return Path(document.relpath).name


def stream_document(
    sessions: sessionmaker[Session], document_id: int, fmt: DocumentFormat
) -> Iterator[bytes]:
    """A text format, produced lazily with a session of its own (the response outlives the request's)."""
    with sessions() as session:
        document = session.get_one(Document, document_id)
        for part in _text_parts(session, document, fmt):
            yield part.encode()


def _text_parts(session: Session, document: Document, fmt: DocumentFormat) -> Iterator[str]:
    if fmt == "json":
        entry = {"id": document.id} | document_entry(document, for_client=True)
        return document_json_parts(entry, document_pages(session, document), client_of=document)
    if fmt == "md":
        return markdown_parts(document_pages(session, document))
    if fmt == "txt":
        return text_parts(session, document)
    return alto_parts(session, document)


def prepare_pdf(sessions: sessionmaker[Session], settings: Settings, document_id: int) -> Path:
    """The searchable PDF in a scratch folder, written before the response starts so a failure is a 409."""
    scratch = Path(tempfile.mkdtemp(prefix=f"ocrq-document-{document_id}-"))
    target = scratch / "document.pdf"
    try:
        with sessions() as session:
            document = session.get_one(Document, document_id)
            with _client_paths(document):
                searchable_pdf_to(session, document, target, settings.output_pdfa)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return target


def stream_and_remove(path: Path) -> Iterator[bytes]:
    """The file in chunks; its scratch folder goes once sent (or when the client goes away)."""
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def page_layout_png(sessions: sessionmaker[Session], caller: Caller, document_id: int, number: int) -> bytes:
    """The page with its cells drawn; 404 for an unknown (or another tenant's) page, 409 when it cannot be."""
    with sessions() as session:
        document = get_visible_document(session, caller, document_id)
        page = session.scalar(select(Page).where(Page.document_id == document_id, Page.index == number - 1))
        if page is None:
            raise ResourceNotFound(f"no page {number} in document {document_id}")
        with _client_paths(document):
            return page_picture(document, page)


@contextmanager
def _client_paths(document: Document) -> Iterator[None]:
    """An OutputError reaches the client without this server's paths in its message."""
    try:
        yield
    except OutputError as error:
        message = hide_server_paths(error.message, document.path, document.relpath) or error.message
        raise type(error)(message) from error


def download_name(name: str, fmt: str) -> str:
    """A header-safe file name: the document's, with the format's suffix."""
    safe = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return safe + FILE_SUFFIXES[fmt]
