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
import os
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import pymupdf
from PIL import Image, ImageFile

from ocrq.db.fs_text import has_undecodable
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
from ocrq.schemas import DocumentType, PageNote
from ocrq.settings import Settings
from ocrq.worker.documents.pdf_damage import damage_notes, scale_notes, whole_file_damage
from ocrq.worker.documents.pixels import fit_pixels, image_page

__all__ = ["fit_pixels", "image_page"]  # re-exported: callers read pages through this module

T = TypeVar("T")

PAGE_MODES = ("L", "RGB")
POINTS_PER_INCH = 72
PDF_TAIL_BYTES = 1024
"""Readers look for ``%%EOF`` in the last 1024 bytes; a file without it was cut short."""
MUPDF_ERRORS = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)
EXIF_ORIENTATION = 0x0112
MIN_SCAN_DPI = 150
"""The least resolution assumed of an image when sizing tile overlaps: below it text is barely read."""
PILLOW_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)

PILLOW_FORMATS = {
    DocumentType.PNG: "PNG",
    DocumentType.JPEG: "JPEG",
    DocumentType.TIFF: "TIFF",
    DocumentType.WEBP: "WEBP",
    DocumentType.BMP: "BMP",
    DocumentType.GIF: "GIF",
}

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

    def render_with_notes(self, index: int, mode: str) -> tuple[Image.Image, list[PageNote]]:
        """:meth:`render`, plus what the user should know about how the page was drawn."""
        return self.render(index, mode), []

    def needs_tiles(self, index: int) -> bool:
        """Whether the page exceeds the pixel cap at full resolution (read in tiles, not shrunk)."""
        return False

    def full_size(self, index: int) -> tuple[float, tuple[int, int]]:
        """The zoom of full resolution and the page's pixel size at it."""
        raise NotImplementedError

    def full_size_at(self, index: int, zoom: float) -> tuple[int, int]:
        raise NotImplementedError

    def pixels_per_inch(self, index: int, zoom: float) -> float:
        """The page's pixels per inch at ``zoom``, which size the tiles' overlap to hold a line."""
        return zoom * POINTS_PER_INCH  # a PDF's zoom is from points

    def render_region(
        self, index: int, zoom: float, box: tuple[int, int, int, int], mode: str
    ) -> tuple[Image.Image, list[PageNote]]:
        """Part of the page at ``zoom`` (``box`` in pixels of the page as shown): a tile."""
        raise NotImplementedError

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

    def __init__(
        self, document: pymupdf.Document, name: str, limits: RenderLimits, damage: PageNote | None = None
    ) -> None:
        super().__init__(name, document.page_count, limits)
        self._document: pymupdf.Document | None = document
        self.damage = damage
        """Why the whole file is suspect (truncated, repaired); every page carries this note."""

    @classmethod
    def open(cls, path: Path, limits: RenderLimits) -> PdfDocument:
        with _MUPDF_LOCK:
            pymupdf.TOOLS.mupdf_warnings(reset=True)
            document = _open_pdf(path)
            try:
                with _mupdf_errors(UnreadableDocument, f"{path.name} is not a readable PDF"):
                    _check_pdf(document, path)
                    _check_page_count(document.page_count, limits, path.name)
                    return cls(
                        document, path.name, limits, whole_file_damage(document, _has_pdf_trailer(path))
                    )
            except BaseException:
                document.close()
                raise

    def render(self, index: int, mode: str) -> Image.Image:
        return self.render_with_notes(index, mode)[0]

    def render_with_notes(self, index: int, mode: str) -> tuple[Image.Image, list[PageNote]]:
        """The page and a ``damaged_source`` warning when MuPDF drew it with errors (part may be lost)."""
        self._check_request(index, mode)
        colorspace = pymupdf.csGRAY if mode == "L" else pymupdf.csRGB
        image, notes = self.with_page(index, lambda page, zoom: self._rasterise(page, zoom, mode, colorspace))
        return image, notes + scale_notes(image, self.limits.dpi)

    def with_page(self, index: int, read: Callable[[pymupdf.Page, float], T]) -> tuple[T, list[PageNote]]:
        """``read(page, zoom)`` under the MuPDF lock, with the damage notes MuPDF's complaints make.

        ``zoom`` is the scale pages render at (points to pixels); PyMuPDF objects must not
        escape ``read``.
        """
        if not 0 <= index < self.page_count:
            raise PageRenderError(f"{self.name} has no page {index + 1} (it has {self.page_count})")
        with (
            _MUPDF_LOCK,
            _mupdf_errors(PageRenderError, f"page {index + 1} of {self.name} could not be rendered"),
        ):
            pymupdf.TOOLS.mupdf_warnings(reset=True)
            page = self._opened().load_page(index)
            value = read(page, pdf_zoom(page.rect, self.limits))
            del page
            return value, damage_notes(self.damage, pymupdf.TOOLS.mupdf_warnings(reset=True))

    def full_size(self, index: int) -> tuple[float, tuple[int, int]]:
        """The zoom of the job's DPI and the page's pixel size at it, whatever the pixel cap says."""
        zoom = self.limits.dpi / POINTS_PER_INCH
        return zoom, self.full_size_at(index, zoom)

    def full_size_at(self, index: int, zoom: float) -> tuple[int, int]:
        size, _ = self.with_page(index, lambda page, _: (page.rect * pymupdf.Matrix(zoom, zoom)).irect)
        return size.width, size.height

    def needs_tiles(self, index: int) -> bool:
        """Whether the page at the job's DPI exceeds the pixel cap (it would be shrunk to fit)."""
        _, (width, height) = self.full_size(index)
        return width * height > self.limits.max_page_pixels

    def render_region(
        self, index: int, zoom: float, box: tuple[int, int, int, int], mode: str
    ) -> tuple[Image.Image, list[PageNote]]:
        """Part of the page (``box`` in pixels of the page as shown, at ``zoom``): a tile of a huge page."""
        self._check_request(index, mode)
        colorspace = pymupdf.csGRAY if mode == "L" else pymupdf.csRGB
        clip = pymupdf.Rect(box) / zoom  # in the shown (rotated) page's points, as PyMuPDF clips

        def draw(page: pymupdf.Page, _: float) -> Image.Image:
            pixmap = page.get_pixmap(
                matrix=pymupdf.Matrix(zoom, zoom), clip=clip, colorspace=colorspace, alpha=False
            )
            image = Image.frombytes(mode, (pixmap.width, pixmap.height), pixmap.samples_mv)
            image.info["dpi"] = (zoom * POINTS_PER_INCH, zoom * POINTS_PER_INCH)
            del pixmap
            pymupdf.TOOLS.store_shrink(100)
            return image

        return self.with_page(index, draw)

    def close(self) -> None:
        with _MUPDF_LOCK:
            if self._document is not None:
                self._document.close()
                self._document = None

    def _rasterise(
        self, page: pymupdf.Page, zoom: float, mode: str, colorspace: pymupdf.Colorspace
    ) -> Image.Image:
        """Runs under the lock, so the pixmap is also freed under it when this returns."""
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


def mupdf_open(path: Path) -> pymupdf.Document:
    """``pymupdf.open`` for any file name: MuPDF takes names as UTF-8 text, and a name that is not
    valid UTF-8 (``bad\\xff.pdf``) cannot be passed. Such a file is opened by its descriptor's
    ``/proc/self/fd`` name instead; MuPDF then holds its own handle."""
    if not has_undecodable(str(path)) or not Path("/proc/self/fd").is_dir():
        return pymupdf.open(path, filetype="pdf")
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return pymupdf.open(f"/proc/self/fd/{descriptor}", filetype="pdf")
    finally:
        os.close(descriptor)


def _open_pdf(path: Path) -> pymupdf.Document:
    try:
        return mupdf_open(path)
    except pymupdf.EmptyFileError as exc:
        raise EmptyDocument(f"{path.name} is empty (0 bytes)") from exc
    except (FileNotFoundError, PermissionError) as exc:
        raise SourceMissing(f"{path} cannot be opened: {exc}") from exc
    except MUPDF_ERRORS as exc:
        raise UnreadableDocument(f"{path.name} is not a readable PDF: {exc}") from exc


def _check_pdf(document: pymupdf.Document, path: Path) -> None:
    """Refuse what MuPDF opened but cannot give us real pages from.

    An owner password alone only restricts permissions and MuPDF opens such
    files, so only a required user password is refused. A damaged file that
    MuPDF repairs is read page by page (each page says what it lost); only one
    from which no page at all could be recovered is unreadable.
    """
    if document.needs_pass:
        raise EncryptedDocument(f"{path.name} is encrypted and needs a password to open")
    if document.is_repaired and document.page_count == 0:
        raise UnreadableDocument(f"{path.name} is damaged or truncated; no page could be recovered")


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

    def render_with_notes(self, index: int, mode: str) -> tuple[Image.Image, list[PageNote]]:
        image = self.render(index, mode)
        width, height = self._upright_size(index)
        if image.width * image.height >= width * height:
            return image, []
        message = (
            f"downscaled from {width}x{height} to {image.width}x{image.height} pixels (OCRQ_MAX_PAGE_PIXELS)"
        )
        return image, [PageNote("scale_note", message)]

    def needs_tiles(self, index: int) -> bool:
        width, height = self._upright_size(index)
        return width * height > self.limits.max_page_pixels

    def full_size(self, index: int) -> tuple[float, tuple[int, int]]:
        return 1.0, self._upright_size(index)

    def full_size_at(self, index: int, zoom: float) -> tuple[int, int]:
        width, height = self._upright_size(index)
        return max(1, round(width * zoom)), max(1, round(height * zoom))

    def render_region(
        self, index: int, zoom: float, box: tuple[int, int, int, int], mode: str
    ) -> tuple[Image.Image, list[PageNote]]:
        """The frame decoded whole (within the source cap), upright, then cut: one decode per tile."""
        self._check_request(index, mode)
        failed = _pillow_errors(
            PageRenderError, f"page {index + 1} of {self.name} could not be decoded", self.name
        )
        with failed, _open_image(self.path, self.doc_type) as image:
            image.seek(index)
            whole = image_page(image, mode, self.limits.max_source_pixels)
        if zoom != 1.0:
            whole = whole.resize(self.full_size_at(index, zoom), Image.Resampling.LANCZOS)
        tile = whole.crop(box)
        tile.info["dpi"] = whole.info.get("dpi") or image.info.get("dpi")
        return tile, []

    def pixels_per_inch(self, index: int, zoom: float) -> float:
        """The image's own dpi, not 72: a 300 dpi scan's lines are four times taller than 72 assumes.

        Never below MIN_SCAN_DPI: a missing tag, or a default 72 or 96, says nothing of a scan, and
        an overlap too large only costs a tile where one too small cuts lines.
        """
        with self._opened_frame(index) as image:
            tagged = image.info.get("dpi") or (0, 0)
        return zoom * max(MIN_SCAN_DPI, *(float(value) for value in tagged))

    def _upright_size(self, index: int) -> tuple[int, int]:
        """The frame's size as shown: EXIF orientations 5-8 swap width and height."""
        with self._opened_frame(index) as image:
            width, height = image.size
            turned = image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
        return (height, width) if turned else (width, height)

    def _opened_frame(self, index: int) -> ImageFile.ImageFile:
        unreadable = _pillow_errors(
            PageRenderError, f"page {index + 1} of {self.name} cannot be read", self.name
        )
        with unreadable:
            image = _open_image(self.path, self.doc_type)
            image.seek(index)
            return image

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
