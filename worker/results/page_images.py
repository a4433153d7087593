"""A scanned image's pages as they go into a PDF: the file's own bytes where possible.

A JPEG goes in as it is (PDF viewers decode DCT themselves), so the searchable PDF neither
loses quality nor grows from a re-encode. Other formats, TIFF frames and JPEGs that need their
EXIF orientation applied are encoded losslessly as PNG. The page size follows the image's DPI
tag when credible, else the 300 dpi of office scans, the same guess the Tesseract engine makes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from ocrq.errors import OutputError
from ocrq.schemas import DocumentType
from ocrq.worker.documents.render import PILLOW_ERRORS, PILLOW_FORMATS
from ocrq.worker.engines.tesseract import ASSUMED_SCAN_DPI

POINTS_PER_INCH = 72.0
CREDIBLE_DPI = (70.0, 2400.0)
EXIF_ORIENTATION = 0x0112
LOSSLESS_MODES = frozenset({"1", "L", "RGB", "P"})


@dataclass(frozen=True, slots=True)
class PageImage:
    data: bytes
    size: tuple[int, int]
    """Pixels, upright."""
    dpi: float

    @property
    def points(self) -> tuple[float, float]:
        return (self.size[0] * POINTS_PER_INCH / self.dpi, self.size[1] * POINTS_PER_INCH / self.dpi)


def page_image(path: Path, doc_type: DocumentType, index: int) -> PageImage:
    """Frame ``index`` of an image document, ready to embed; a vanished or damaged file is an OutputError."""
    try:
        with Image.open(path, formats=[PILLOW_FORMATS[doc_type]]) as image:
            image.seek(index)
            dpi = _dpi(image)
            if _passes_through(image, doc_type, index):
                return PageImage(path.read_bytes(), image.size, dpi)
            upright = ImageOps.exif_transpose(image)
            return PageImage(_png(upright), upright.size, dpi)
    except (FileNotFoundError, PermissionError) as error:
        raise OutputError(f"{path.name} is no longer there to embed: {error}") from error
    except PILLOW_ERRORS as error:
        raise OutputError(f"page {index + 1} of {path.name} could not be read again: {error}") from error


def _passes_through(image: Image.Image, doc_type: DocumentType, index: int) -> bool:
    upright = image.getexif().get(EXIF_ORIENTATION, 1) in (1, None)
    return doc_type is DocumentType.JPEG and index == 0 and upright and image.mode in ("L", "RGB", "CMYK")


def _png(image: Image.Image) -> bytes:
    if image.mode not in LOSSLESS_MODES:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def _dpi(image: Image.Image) -> float:
    try:
        value = float(image.info["dpi"][0])
    except (KeyError, TypeError, ValueError, IndexError):
        return float(ASSUMED_SCAN_DPI)
    low, high = CREDIBLE_DPI
    return value if low <= value <= high else float(ASSUMED_SCAN_DPI)
