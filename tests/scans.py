"""Scanned-looking test documents: text drawn into a JPEG, placed on PDF pages in the geometries
that break text layers (``/Rotate`` 90 shown upright, a MediaBox whose origin is not 0, 0)."""

from __future__ import annotations

import io
from pathlib import Path

import pikepdf
import pymupdf
from PIL import Image, ImageDraw, ImageFont

SCAN_DPI = 200
SERIF = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
RUSSIAN = [
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Широкая электрификация южных губерний даст мощный толчок",
    "подъёму сельского хозяйства и промышленности страны.",
]
ENGLISH = [
    "The quick brown fox jumps over the lazy dog near the river.",
    "Pack my box with five dozen liquor jugs before the winter.",
    "Sphinx of black quartz, judge my vow and read this page.",
]
MEDIABOX_ORIGIN = (100.0, 200.0)
SIDEWAYS = {"sideways_left": Image.Transpose.ROTATE_90, "sideways_right": Image.Transpose.ROTATE_270}


def scan_jpeg(lines: list[str], size: tuple[int, int] = (1500, 700)) -> bytes:
    """A page of printed lines as a 200 dpi greyscale JPEG."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(SERIF, 38)
    for number, line in enumerate(lines):
        draw.text((80, 90 + number * 90), line, font=font, fill=0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, dpi=(SCAN_DPI, SCAN_DPI))
    return buffer.getvalue()


def make_scan_pdf(path: Path, pages: list[list[str]], geometry: str = "plain") -> Path:
    """One scanned page per list of lines; geometry is ``plain``, ``rotate90``, ``origin``,
    ``sideways_left`` (text reads bottom to top) or ``sideways_right`` (top to bottom)."""
    document = pymupdf.open()
    for lines in pages:
        jpeg = scan_jpeg(lines)
        width, height = (v * 72 / SCAN_DPI for v in Image.open(io.BytesIO(jpeg)).size)
        if geometry in SIDEWAYS:  # scanned sideways and shown sideways: OCR must turn it
            jpeg = _turned(jpeg, SIDEWAYS[geometry])
            width, height = height, width
        if geometry == "rotate90":  # stored sideways, shown upright: how scanners save landscape pages
            page = document.new_page(width=height, height=width)
            page.set_rotation(90)
            page.insert_image(page.rect * page.derotation_matrix, stream=jpeg, rotate=90)
        else:
            page = document.new_page(width=width, height=height)
            page.insert_image(page.rect, stream=jpeg)
    document.save(path)
    document.close()
    if geometry == "origin":
        _shift_mediabox(path)
    return path


def _turned(jpeg: bytes, turn: Image.Transpose) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).transpose(turn).save(buffer, "JPEG", quality=90, dpi=(SCAN_DPI, SCAN_DPI))
    return buffer.getvalue()


def _shift_mediabox(path: Path) -> None:
    """Move every page's MediaBox (and the content with it) away from 0, 0, as cropped JSTOR PDFs have."""
    dx, dy = MEDIABOX_ORIGIN
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        for page in pdf.pages:
            x1, y1, x2, y2 = (float(v) for v in page.MediaBox)
            page.MediaBox = pikepdf.Array([x1 + dx, y1 + dy, x2 + dx, y2 + dy])
            page.contents_add(pdf.make_stream(b"q 1 0 0 1 100 200 cm"), prepend=True)
            page.contents_add(pdf.make_stream(b"Q"))
        pdf.save(path)
