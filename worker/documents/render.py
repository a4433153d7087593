"""Open a document and render its pages one at a time, as Pillow images ready for OCR.

Opening reads only what is needed to count pages and to refuse documents that
cannot work (encrypted, damaged, empty, too many pages, image bombs), so a job
fails early and cheaply. Pages are rendered on demand and nothing rendered is
kept, so memory stays flat whether a PDF has 1 page or 1000.

Library exceptions (PyMuPDF, Pillow) are translated here into the ocrq error
tree: nothing above this module needs to know which library read the file.
"""

from __future__ import annotations

import math
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pymupdf
from PIL import Image, ImageFile, ImageOps

from ocrq.errors import (
    ConfigurationError,
    EmptyDocument,
    EncryptedDocument,
    InputError,
    PageRenderError,
    SourceMissing,
    TooLarge,
    UnreadableDocument,
)
from ocrq.schemas import DocumentType
from ocrq.settings import Settings

PAGE_MODES = ("L", "RGB")
POINTS_PER_INCH = 72
PDF_TAIL_BYTES = 1024
"""Readers look for ``%%EOF`` in the last 1024 bytes; a file without it was cut short."""

MUPDF_ERRORS = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)
PILLOW_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)

PILLOW_FORMATS = {
    DocumentType.PNG: "PNG",
    DocumentType.JPEG: "JPEG",
    DocumentType.TIFF: "TIFF",
    DocumentType.WEBP: "WEBP",
    DocumentType.BMP: "BMP",
    DocumentType.GIF: "GIF",
}
NEAREST_ONLY_MODES = frozenset({"1", "P", "PA"})
"""Pillow resizes these by picking pixels; converting them first keeps thin strokes."""

_MUPDF_LOCK = threading.Lock()
"""PyMuPDF shares one MuPDF context and is not thread-safe; page workers take turns."""
STORE_SHRINK_EVERY = 8
"""MuPDF caches every decoded image and font (up to 256 MB). Emptying that store after every page kept
memory flat but made each page decode its fonts again: 13 ms a page instead of 5 with every 8th
(issue 16). Every 8th page keeps memory flat and near the render's own cost."""
_renders_since_shrink = 0


def _shrink_store_now_and_then() -> None:
    """Called under ``_MUPDF_LOCK`` after each page."""
    global _renders_since_shrink
    _renders_since_shrink += 1
    if _renders_since_shrink >= STORE_SHRINK_EVERY:
        pymupdf.TOOLS.store_shrink(100)
        _renders_since_shrink = 0


@dataclass(frozen=True)
class RenderLimits:
    """How pages are rendered and what is refused; copied from :class:`Settings`."""

    dpi: int
    max_page_pixels: int
    max_source_pixels: int
    max_pages: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderLimits:
        return cls(
            dpi=settings.render_dpi,
            max_page_pixels=settings.max_page_pixels,
            max_source_pixels=settings.max_source_pixels,
            max_pages=settings.max_pages_per_document,
        )


class OpenedDocument(ABC):
    """A document whose pages can be rendered in any order, one at a time."""

    def __init__(self, name: str, page_count: int, limits: RenderLimits) -> None:
        self.name, self.page_count, self.limits = name, page_count, limits

    @abstractmethod
    def render(self, index: int, mode: str) -> Image.Image:
        """Page ``index`` (0-based) in Pillow mode "L" or "RGB"; a failure fails only this page."""

    @abstractmethod
    def close(self) -> None:
        """Release the file; safe to call twice."""

    def __enter__(self) -> OpenedDocument:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _check_request(self, index: int, mode: str) -> None:
        if mode not in PAGE_MODES:
            raise ConfigurationError(f"pages render in {PAGE_MODES}, not {mode!r}")
        if not 0 <= index < self.page_count:  # the file may have changed since its pages were counted
            raise PageRenderError(f"{self.name} has no page {index + 1} (it has {self.page_count})")


def open_document(path: Path, doc_type: DocumentType, limits: RenderLimits) -> OpenedDocument:
    """Open a document of a sniffed type, refusing it now if no page could ever be rendered."""
    _check_source(path)
    if doc_type is DocumentType.PDF:
        return PdfDocument.open(path, limits)
    return ImageDocument.open(path, doc_type, limits)


def _check_source(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SourceMissing(f"{path} cannot be opened: {exc.strerror or exc}") from exc
    if size == 0:
        raise EmptyDocument(f"{path.name} is empty (0 bytes)")


def _check_page_count(count: int, limits: RenderLimits, name: str) -> None:
    if count == 0:
        raise EmptyDocument(f"{name} has no pages")
    if count > limits.max_pages:
        raise TooLarge(f"{name} has {count:,} pages; the limit is {limits.max_pages:,}")


# --- PDF ---------------------------------------------------------------------


class PdfDocument(OpenedDocument):
    """A PDF held open by MuPDF; each render loads and rasterises a single page."""

    def __init__(self, document: pymupdf.Document, name: str, limits: RenderLimits) -> None:
        super().__init__(name, document.page_count, limits)
        self._document: pymupdf.Document | None = document

    @classmethod
    def open(cls, path: Path, limits: RenderLimits) -> PdfDocument:
        with _MUPDF_LOCK:
            document = _open_pdf(path)
            try:
                with _mupdf_errors(UnreadableDocument, f"{path.name} is not a readable PDF"):
                    _check_pdf(document, path)
                    _check_page_count(document.page_count, limits, path.name)
                    return cls(document, path.name, limits)
            except BaseException:
                document.close()
                raise

    def render(self, index: int, mode: str) -> Image.Image:
        self._check_request(index, mode)
        colorspace = pymupdf.csGRAY if mode == "L" else pymupdf.csRGB
        with (
            _MUPDF_LOCK,
            _mupdf_errors(PageRenderError, f"page {index + 1} of {self.name} could not be rendered"),
        ):
            return self._rasterise(index, mode, colorspace)

    def close(self) -> None:
        with _MUPDF_LOCK:
            if self._document is not None:
                self._document.close()
                self._document = None

    def _rasterise(self, index: int, mode: str, colorspace: pymupdf.Colorspace) -> Image.Image:
        """Runs under the lock, so the page and pixmap are also freed under it when this returns."""
        page = self._opened().load_page(index)
        zoom = pdf_zoom(page.rect, self.limits)
        pixmap = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=colorspace, alpha=False)
        image = Image.frombytes(mode, (pixmap.width, pixmap.height), pixmap.samples_mv)
        image.info["dpi"] = (zoom * POINTS_PER_INCH, zoom * POINTS_PER_INCH)  # engines size text by it
        del page, pixmap
        _shrink_store_now_and_then()
        return image

    def _opened(self) -> pymupdf.Document:
        if self._document is None:
            raise PageRenderError(f"{self.name} was already closed")
        return self._document


def _open_pdf(path: Path) -> pymupdf.Document:
    try:
        return pymupdf.open(path, filetype="pdf")
    except pymupdf.EmptyFileError as exc:
        raise EmptyDocument(f"{path.name} is empty (0 bytes)") from exc
    except (FileNotFoundError, PermissionError) as exc:
        raise SourceMissing(f"{path} cannot be opened: {exc}") from exc
    except MUPDF_ERRORS as exc:
        raise UnreadableDocument(f"{path.name} is not a readable PDF: {exc}") from exc


def _check_pdf(document: pymupdf.Document, path: Path) -> None:
    """Refuse what MuPDF opened but cannot give us real pages from.

    An owner password alone only restricts permissions and MuPDF opens such
    files, so only a required user password is refused. MuPDF also "repairs"
    truncated files into pages that render blank or half-drawn; a repaired file
    that also lacks its end-of-file marker was cut short, and OCRing it would
    report empty text as success.
    """
    if document.needs_pass:
        raise EncryptedDocument(f"{path.name} is encrypted and needs a password to open")
    if document.is_repaired and (document.page_count == 0 or not _has_pdf_trailer(path)):
        raise UnreadableDocument(f"{path.name} is damaged or truncated; no complete page could be recovered")


def _has_pdf_trailer(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - PDF_TAIL_BYTES))
        return b"%%EOF" in file.read()


def pdf_zoom(page_rect: pymupdf.Rect, limits: RenderLimits) -> float:
    """Scale from points to pixels: ``limits.dpi``, lowered for pages that would exceed the pixel cap.

    MuPDF rounds each side of the pixmap up, so the cap must hold for
    (w·z + 1)·(h·z + 1), not w·h·z²: z is the positive root of that quadratic.
    """
    zoom = limits.dpi / POINTS_PER_INCH
    width, height = abs(page_rect.width), abs(page_rect.height)
    area = width * height
    if area == 0 or (width * zoom + 1) * (height * zoom + 1) <= limits.max_page_pixels:
        return zoom
    spread = width + height
    return (-spread + math.sqrt(spread**2 + 4 * area * (limits.max_page_pixels - 1))) / (2 * area)


@contextmanager
def _mupdf_errors(error: type[InputError], context: str) -> Iterator[None]:
    try:
        yield
    except MUPDF_ERRORS as exc:
        raise error(f"{context}: {exc}") from exc


# --- images ------------------------------------------------------------------


class ImageDocument(OpenedDocument):
    """A raster image; TIFF frames are pages, other formats' animations are one page.

    The file is reopened for each render instead of held open: a Pillow image
    keeps its last decoded frame, and documents stay cached between pages.
    """

    def __init__(self, path: Path, doc_type: DocumentType, page_count: int, limits: RenderLimits) -> None:
        super().__init__(path.name, page_count, limits)
        self.path, self.doc_type = path, doc_type

    @classmethod
    def open(cls, path: Path, doc_type: DocumentType, limits: RenderLimits) -> ImageDocument:
        unreadable = _pillow_errors(UnreadableDocument, f"{path.name} is not a readable image", path.name)
        with unreadable, _open_image(path, doc_type) as image:
            count = getattr(image, "n_frames", 1) if doc_type is DocumentType.TIFF else 1
            _check_page_count(count, limits, path.name)
            for index in range(count):
                image.seek(index)
                _check_source_pixels(image, limits, path.name)
        return cls(path, doc_type, count, limits)

    def render(self, index: int, mode: str) -> Image.Image:
        self._check_request(index, mode)
        failed = _pillow_errors(
            PageRenderError, f"page {index + 1} of {self.name} could not be decoded", self.name
        )
        with failed, _open_image(self.path, self.doc_type) as image:
            image.seek(index)
            _check_source_pixels(image, self.limits, self.name)
            return image_page(image, mode, self.limits.max_page_pixels)

    def close(self) -> None:
        """Nothing to release: the file is only open during a render."""


def _open_image(path: Path, doc_type: DocumentType) -> ImageFile.ImageFile:
    """Read only the header, with the one decoder the sniffed type names."""
    try:
        return Image.open(path, formats=[PILLOW_FORMATS[doc_type]])
    except (FileNotFoundError, PermissionError) as exc:
        raise SourceMissing(f"{path} cannot be opened: {exc.strerror or exc}") from exc


def _check_source_pixels(image: Image.Image, limits: RenderLimits, name: str) -> None:
    """Refuse from the header's size alone, before a single pixel is decoded."""
    width, height = image.size
    if width * height > limits.max_source_pixels:
        raise TooLarge(
            f"{name} declares {width:,}x{height:,} pixels; the limit is {limits.max_source_pixels:,} "
            "(possible decompression bomb)"
        )


@contextmanager
def _pillow_errors(error: type[InputError], context: str, name: str) -> Iterator[None]:
    """Pillow's bomb guard (at about 179 Mpx) also stays on, as a second net under ours."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"{name} is too large to decode safely: {exc}") from exc
    except PILLOW_ERRORS as exc:
        raise error(f"{context}: {exc}") from exc


def image_page(image: ImageFile.ImageFile, mode: str, max_pixels: int) -> Image.Image:
    """Decode the current frame upright, in ``mode``, within ``max_pixels``; a new image, never ``image``."""
    _draft_within(image, mode, max_pixels)
    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode in NEAREST_ONLY_MODES:
        return fit_pixels(_to_mode(image, mode), max_pixels)
    return _to_mode(fit_pixels(image, max_pixels), mode)


def _draft_within(image: ImageFile.ImageFile, mode: str, max_pixels: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 size (and straight to grey) instead of full then shrink."""
    if image.format != "JPEG":
        return
    width, height = image.size
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    image.draft(mode, (math.ceil(width * scale), math.ceil(height * scale)))


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Shrink, keeping the aspect ratio, to at most ``max_pixels``; small images are returned as they are."""
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Always a new image: transparency on white paper, deep pixels scaled, not clipped."""
    if image.has_transparency_data:
        image = _on_white(image)
    elif image.mode.startswith("I") or image.mode == "F":
        image = _scaled_to_grey(image)
    try:
        return image.convert(mode)
    except ValueError:  # Pillow converts some modes (LAB) only to RGB
        return image.convert("RGB").convert(mode)


def _on_white(image: Image.Image) -> Image.Image:
    """Transparent areas are blank paper, not black (what a plain convert would give)."""
    paper = Image.new("RGBA", image.size, "white")
    paper.alpha_composite(image.convert("RGBA"))
    return paper.convert("RGB")


def _scaled_to_grey(image: Image.Image) -> Image.Image:
    """16-bit and float pixels mapped onto 0-255 by their range; Pillow's convert clips them to white."""
    wide = image.convert("F")
    low, high = wide.getextrema()
    low, high = min(float(low), 0.0), max(float(high), 255.0)
    if (low, high) == (0.0, 255.0):
        return wide.convert("L")
    scale = 255 / (high - low)
    return wide.point(lambda value: (value - low) * scale).convert("L")
