"""The per-document result files beyond Markdown and JSON, each written from the database on its own.

A format that cannot be written (the source moved away, a PDF library refusing a file) is
recorded under the document's ``output_errors`` in ``batch.json`` and the API; the document's
other files, and the other documents, are still written.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ocrq.db.fs_text import shown
from ocrq.db.models import Document, Page
from ocrq.errors import InputError, OcrqError, OutputError
from ocrq.schemas import DocumentType, PageStatus
from ocrq.settings import Settings
from ocrq.worker.documents.render import open_document
from ocrq.worker.results.alto import document_alto
from ocrq.worker.results.layout_picture import layout_picture, layout_pictures, picture_limits
from ocrq.worker.results.plain_text import document_text
from ocrq.worker.results.searchable_pdf import write_searchable_pdf
from ocrq.worker.results.words import PageWords, page_words

log = logging.getLogger(__name__)
PAGES_PER_FETCH = 200
NEW_FORMATS = ("txt", "pdf", "alto", "layout")


def write_document_formats(
    session: Session, document: Document, target: Path, settings: Settings
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Write the wanted formats beside ``target``; returns (written paths, errors by format)."""
    written: dict[str, str] = {}
    errors: dict[str, dict[str, str]] = {}
    if not document.pages_done:
        return written, errors
    for name in (name for name in NEW_FORMATS if settings.wants(name)):
        try:
            path, warning = WRITERS[name](session, document, target, settings)
        except OcrqError as error:
            log.warning("%s of %s not written: %s", name, document.relpath, error.message)
            errors[name] = error.as_dict()
            continue
        written[name] = path
        if warning is not None:
            errors[name] = warning.as_dict()
    return written, errors


def document_words(session: Session, document_id: int) -> Iterator[PageWords]:
    """Every page placed word by word, in index order, streamed; a failed page has no blocks."""
    query = select(Page).where(Page.document_id == document_id).order_by(Page.index)
    for page in session.scalars(query.execution_options(yield_per=PAGES_PER_FETCH)):
        yield _words(page)
        session.expunge(page)


def _words(page: Page) -> PageWords:
    if page.status != PageStatus.DONE or not page.width or not page.height:
        return PageWords(page.index, page.width or 1, page.height or 1, ())
    return page_words(page.index, page.width, page.height, page.cells or [])


Written = tuple[str, OcrqError | None]


def text_parts(session: Session, document: Document) -> Iterator[str]:
    return document_text(document_words(session, document.id))


def alto_parts(session: Session, document: Document) -> Iterator[str]:
    return document_alto(
        shown(Path(document.path).name), document_words(session, document.id), _engines(session, document)
    )


def searchable_pdf_to(session: Session, document: Document, target: Path, pdfa: bool) -> OcrqError | None:
    """The document's searchable PDF at ``target``; a warning (PDF/A not reached) or None."""
    return write_searchable_pdf(
        Path(document.path), _source_type(document), document_words(session, document.id), target, pdfa
    )


def page_picture(document: Document, page: Page) -> bytes:
    """One page's layout picture, for the API; the source unreadable now is an OutputError."""
    words = _words(page)
    if not words.blocks:
        raise OutputError(f"page {page.index + 1} of {document.relpath} has no layout cells")
    try:
        with open_document(Path(document.path), _source_type(document), picture_limits(words)) as opened:
            return layout_picture(opened, words)
    except InputError as error:
        raise OutputError(f"{document.relpath} could not be read again: {error.message}") from error


def _write_txt(session: Session, document: Document, target: Path, settings: Settings) -> Written:
    return write_text_stream(Path(f"{target}.txt"), text_parts(session, document)), None


def _write_alto(session: Session, document: Document, target: Path, settings: Settings) -> Written:
    return write_text_stream(Path(f"{target}.alto.xml"), alto_parts(session, document)), None


def _write_pdf(session: Session, document: Document, target: Path, settings: Settings) -> Written:
    path = Path(f"{target}.pdf")  # like every format: scan.pdf gives scan.pdf.pdf beside scan.pdf.md
    return str(path), searchable_pdf_to(session, document, path, settings.output_pdfa)


def _write_layout(session: Session, document: Document, target: Path, settings: Settings) -> Written:
    folder = Path(f"{target}.layout")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    pictures = layout_pictures(
        Path(document.path), _source_type(document), document_words(session, document.id)
    )
    try:
        for picture in _source_errors(pictures, document):
            (partial / f"page-{picture.index + 1:04d}.png").write_bytes(picture.png)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    return str(folder), None


def _source_errors(items: Iterable[Any], document: Document) -> Iterator[Any]:
    """The source is read again for pictures: its absence or damage now is this format's error."""
    try:
        yield from items
    except OcrqError as error:
        raise OutputError(f"{document.relpath} could not be read again: {error.message}") from error


def _source_type(document: Document) -> DocumentType:
    if not document.detected_type:
        raise OutputError(f"{document.relpath} has no detected type")
    return DocumentType(document.detected_type)


def _engines(session: Session, document: Document) -> str:
    query = select(Page.model).where(Page.document_id == document.id, Page.model.is_not(None)).distinct()
    return ", ".join(sorted(model for model in session.scalars(query) if model))


WRITERS: dict[str, Callable[[Session, Document, Path, Settings], Written]] = {
    "txt": _write_txt,
    "pdf": _write_pdf,
    "alto": _write_alto,
    "layout": _write_layout,
}


def write_text_stream(path: Path, parts: Iterable[str]) -> str:
    """Write through a temporary file so a reader never sees half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as stream:
        stream.writelines(parts)
    os.replace(partial, path)
    return str(path)
