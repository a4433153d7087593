"""The searchable PDF: the original pages, untouched, with an invisible text layer on each.

For a PDF source each page keeps its content, and its own text: words it already has are not
written again (:mod:`ocrq.worker.results.existing_text`). The text layer
(:mod:`ocrq.worker.results.text_layer`) is placed over the page as a form XObject through
PyMuPDF, which accounts for ``/Rotate`` and for a MediaBox whose origin is not (0, 0), the
misalignment OCRmyPDF fixed in #1630. Our word boxes are in the frame the page was rendered in
for OCR, which is the page as seen (rotated, cropped), so the layer is drawn upright in that
frame and turned back with the page's own rotation.

For an image source each frame becomes a page at its native resolution
(:mod:`ocrq.worker.results.page_images`).

Memory stays flat on long documents: words come in a chunk of pages at a time, images are
written to chunk files that pikepdf (qpdf) merges while copying their streams from disk, and a
PDF source gains only a small text stream per page. With ``OCRQ_OUTPUT_PDFA`` pikepdf's PDF/A
module prepares, writes and re-validates the file as PDF/A-2b; a source that cannot conform
keeps a plain searchable PDF and the reason is reported.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import pymupdf

from ocrq.errors import OcrqError, OutputError, PdfaNotReached
from ocrq.schemas import DocumentType
from ocrq.worker.documents.render import _MUPDF_LOCK as MUPDF_LOCK
from ocrq.worker.documents.render import MUPDF_ERRORS, mupdf_open
from ocrq.worker.results.existing_text import without_existing_text
from ocrq.worker.results.page_images import page_image
from ocrq.worker.results.words import PageWords

CHUNK_PAGES = 50
"""Pages whose words (and, for images, encoded pages) are held at once."""


def write_searchable_pdf(
    source: Path, doc_type: DocumentType, pages: Iterable[PageWords], target: Path, pdfa: bool = False
) -> OcrqError | None:
    """Write ``target``; returns a warning (PDF/A not reached) or None. Raises OutputError on failure.

    ``pages`` holds every page of the document in index order; a page without words (failed,
    blank) is kept as it is, without text.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ocrq-pdf-") as scratch_dir:
        scratch = Path(scratch_dir)
        partial = scratch / "layered.pdf"
        with MUPDF_LOCK, _library_errors(source):
            if doc_type is DocumentType.PDF:
                _layer_pdf(source, pages, partial, scratch)
            else:
                _layer_images(source, doc_type, pages, partial, scratch)
        return _finish(partial, target, pdfa)


def _layer_pdf(source: Path, pages: Iterable[PageWords], partial: Path, scratch: Path) -> None:
    document = mupdf_open(source)
    try:
        for chunk in _chunks(pages):
            pages_here = [words for words in chunk if words.index < document.page_count]
            _lay_text(document, [without_existing_text(document[w.index], w) for w in pages_here], scratch)
        document.save(partial, garbage=1, deflate=True)
    finally:
        document.close()


def _layer_images(
    source: Path, doc_type: DocumentType, pages: Iterable[PageWords], partial: Path, scratch: Path
) -> None:
    parts = []
    for number, chunk in enumerate(_chunks(pages)):
        part = scratch / f"part-{number:05d}.pdf"
        _image_part(source, doc_type, chunk, part, scratch)
        parts.append(part)
    _merge(parts, partial)


def _image_part(
    source: Path, doc_type: DocumentType, chunk: list[PageWords], part: Path, scratch: Path
) -> None:
    """Image pages at native size, numbered from 0 in this part (the words carry document indexes)."""
    document = pymupdf.open()
    try:
        for words in chunk:
            image = page_image(source, doc_type, words.index)
            page = document.new_page(width=image.points[0], height=image.points[1])
            page.insert_image(page.rect, stream=image.data)
        first = chunk[0].index
        _lay_text(document, [_renumbered(words, words.index - first) for words in chunk], scratch)
        document.save(part, garbage=1)
    finally:
        document.close()


def _lay_text(document: pymupdf.Document, chunk: list[PageWords], scratch: Path) -> None:
    """Each page's words drawn in its visible frame, placed back through its rotation."""
    from ocrq.worker.results.text_layer import (
        render_text_pages,  # OCRmyPDF and fpdf2 load only when a PDF is made
    )

    text_path = scratch / "text.pdf"
    drawn = render_text_pages([(words, document[words.index].rect.width) for words in chunk], text_path)
    if not drawn:
        return
    with pymupdf.open(text_path) as text:
        for number, index in enumerate(drawn):
            page = document[index]
            target = page.rect * page.derotation_matrix
            page.show_pdf_page(target, text, number, keep_proportion=False, rotate=page.rotation)
    text_path.unlink()


def _merge(parts: list[Path], partial: Path) -> None:
    """qpdf copies each part's streams from its file while writing: no part is held whole."""
    if len(parts) == 1:
        os.replace(parts[0], partial)
        return
    import pikepdf

    opened = [pikepdf.open(part) for part in parts]
    try:
        with pikepdf.new() as merged:
            for pdf in opened:
                merged.pages.extend(pdf.pages)
            merged.save(partial)
    finally:
        for pdf in opened:
            pdf.close()


def _finish(partial: Path, target: Path, pdfa: bool) -> OcrqError | None:
    """Move into place; as PDF/A-2b when asked and reachable, else as it is, with the reason."""
    warning = _as_pdfa(partial) if pdfa else None
    os.replace(partial, target)
    return warning


def _as_pdfa(partial: Path) -> OcrqError | None:
    import pikepdf
    from pikepdf import pdfa  # needs pikepdf's [pdfa] extra

    converted = partial.with_name("pdfa.pdf")
    try:
        with pikepdf.open(partial) as pdf:
            if "/Info" in pdf.Root:  # MuPDF leaves a stray /Info in the catalog, which PDF/A does not allow
                del pdf.Root.Info
            pdfa.save(pdf, converted, "2b")
    except pdfa.PdfaError as error:
        return PdfaNotReached(f"written without PDF/A: {_first_finding(error)}")
    os.replace(converted, partial)
    return None


def _first_finding(error: Exception) -> str:
    findings = getattr(getattr(error, "report", None), "findings", None) or []
    return str(findings[0]) if findings else str(error)


def _renumbered(words: PageWords, index: int) -> PageWords:
    return PageWords(index, words.width, words.height, words.blocks)


def _chunks(pages: Iterable[PageWords]) -> Iterator[list[PageWords]]:
    iterator = iter(pages)
    while chunk := list(islice(iterator, CHUNK_PAGES)):
        yield chunk


@contextmanager
def _library_errors(source: Path) -> Iterator[None]:
    """PyMuPDF, pikepdf and OS failures become the document's OutputError, naming the source."""
    from pikepdf import PdfError

    try:
        yield
    except (*MUPDF_ERRORS, PdfError, OSError) as error:
        raise OutputError(f"searchable PDF of {source.name} failed: {error}") from error
