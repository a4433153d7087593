"""Small test documents made in code, so no test depends on (or copies) corpus files.

Every ``make_*`` that writes a file takes the destination path and returns it,
so calls compose: ``sniff_type(make_text_pdf(tmp_path / "a.pdf", ["Hi"]))``.
Text is drawn with DejaVu Sans (Latin and Cyrillic) in a large size, big enough
for Tesseract to read at 200 dpi, so OCR tests can use these files too.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw, ImageFont

DEJAVU_SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
A4_POINTS = (210 / 25.4 * 72, 297 / 25.4 * 72)  # 210 x 297 mm: 595.28 x 841.89 pt
PDF_FONT_SIZE = 28
IMAGE_FONT_SIZE = 40
MARGIN = 40
EXIF_ORIENTATION_TAG = 0x0112

# What a viewer does to show an image with this EXIF orientation; a factory does the inverse.
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def make_text_pdf(
    path: Path, pages: list[str], rotate: int = 0, size: tuple[float, float] = A4_POINTS
) -> Path:
    """A born-digital PDF, one page per string, text wrapped inside the margins.

    ``rotate`` sets each page's /Rotate (0, 90, 180, 270); the text is laid out on
    the unrotated page, so a viewer honouring /Rotate shows it turned. ``size`` is
    the page size in points (A4 portrait by default).
    """
    document = _text_document(pages, rotate, size)
    document.subset_fonts()  # keeps a file of many pages at a few hundred KB, not 750 KB of font
    document.save(path, garbage=3, deflate=True)
    document.close()
    return path


def _text_document(pages: list[str], rotate: int, size: tuple[float, float]) -> pymupdf.Document:
    document = pymupdf.open()
    for text in pages:
        page = document.new_page(width=size[0], height=size[1])
        box = pymupdf.Rect(MARGIN, MARGIN, size[0] - MARGIN, size[1] - MARGIN)
        spare = page.insert_textbox(
            box, text, fontsize=PDF_FONT_SIZE, fontname="dejavu", fontfile=str(DEJAVU_SANS)
        )
        if spare < 0:  # PyMuPDF writes nothing at all when the text does not fit
            raise ValueError(f"text of {len(text)} characters does not fit on a {size} pt page")
        page.set_rotation(rotate)
    return document


def make_text_image(
    text: str, size: tuple[int, int] = (1200, 400), mode: str = "RGB", font_size: int = IMAGE_FONT_SIZE
) -> Image.Image:
    """Black text on white, word-wrapped to the width; save it in whatever format a test needs."""
    image = Image.new(mode, size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(DEJAVU_SANS), font_size)
    block = "\n".join(_wrap(text, font, size[0] - 2 * MARGIN))
    spacing = font_size // 3
    if draw.multiline_textbbox((MARGIN, MARGIN), block, font=font, spacing=spacing)[3] > size[1]:
        raise ValueError(f"text of {len(text)} characters does not fit in a {size} px image")
    draw.multiline_text((MARGIN, MARGIN), block, fill="black", font=font, spacing=spacing)
    return image


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def make_encrypted_pdf(
    path: Path,
    user_password: str = "user-secret",
    owner_password: str = "owner-secret",
    text: str = "Locked document",
) -> Path:
    """An AES-256 encrypted one-page PDF.

    With the default user password nothing opens it without the password; with
    ``user_password=""`` it is an owner-password-only PDF (restricted permissions)
    that any reader opens, which the renderer must accept.
    """
    document = _text_document([text], 0, A4_POINTS)
    document.save(
        path,
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        user_pw=user_password,
        owner_pw=owner_password,
        permissions=pymupdf.PDF_PERM_ACCESSIBILITY,
    )
    document.close()
    return path


def make_empty_pdf(path: Path) -> Path:
    """A valid PDF with zero pages (/Count 0), written by hand: PyMuPDF refuses to save one."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    path.write_bytes(_pdf_bytes(objects))
    return path


def make_pdf_missing_page(path: Path, text: str = "Page one is fine") -> Path:
    """A two-page PDF whose page tree lost page 2 (its /Count still claims it), written by hand.

    Page 1 renders (``text`` in Helvetica, Latin only); page 2 cannot be loaded.
    This is how a partially failed document looks to the renderer: one page's error,
    the others fine.
    """
    content = b"BT /F1 28 Tf 72 700 Td (%s) Tj ET" % text.encode("latin-1")
    font = b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources %s >>" % font,
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Pages /Parent 2 0 R /Kids [6 0 R] /Count 1 >>",
        b"<< /Type /Pages /Kids [] /Count 0 >>",  # the lost page: an empty subtree
    ]
    path.write_bytes(_pdf_bytes(objects))
    return path


def make_pdf_with_broken_page_tree(path: Path) -> Path:
    """A PDF whose root /Count (5) disagrees with its one page: MuPDF cannot count its pages."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 5 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
    ]
    path.write_bytes(_pdf_bytes(objects))
    return path


def _pdf_bytes(objects: list[bytes]) -> bytes:
    """A classic PDF with a correct xref table; the first object is the catalog."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_multiframe_tiff(path: Path, texts: list[str], size: tuple[int, int] = (1200, 400)) -> Path:
    """A multi-page TIFF, one greyscale frame per text (deflate-compressed, lossless)."""
    frames = [make_text_image(text, size, mode="L") for text in texts]
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    return path


def make_truncated(path_src: Path, path_dst: Path, keep: float = 0.5) -> Path:
    """A copy of ``path_src`` cut after the first ``keep`` fraction of its bytes (a broken download)."""
    data = path_src.read_bytes()
    path_dst.write_bytes(data[: max(1, int(len(data) * keep))])
    return path_dst


def make_bomb_png(path: Path, width: int = 60_000, height: int = 60_000) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` grey pixels (a decompression bomb).

    The chunks have valid CRCs, so a reader that trusts the header would try to
    allocate width*height bytes (3.6 GB by default) before noticing the data is short.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    rows = zlib.compress(b"\x00" * (width + 1) * 4)  # a few real rows: filter byte + pixels
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows)
    path.write_bytes(png + _png_chunk(b"IEND", b""))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_exif_rotated_jpeg(path: Path, text: str, orientation: int = 6) -> Path:
    """A JPEG stored turned, with the EXIF orientation that tells viewers how to turn it back.

    Shown correctly (orientation applied) it is ``make_text_image(text)``: 1200x400
    landscape. The stored pixels are the inverse transform, so for orientations
    5-8 the raw JPEG is 400x1200 portrait.
    """
    upright = make_text_image(text)
    stored = (
        upright.transpose(_UNDO_ORIENTATION[orientation]) if orientation in _UNDO_ORIENTATION else upright
    )
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    stored.save(path, format="JPEG", quality=90, exif=exif.tobytes())
    return path
