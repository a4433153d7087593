"""PDFs whose text layer is good, missing, hidden, garbled or damaged, made in code for the gate's tests."""

from __future__ import annotations

import io
from pathlib import Path

import pymupdf
from fontTools import subset
from fontTools.ttLib import TTFont
from fontTools.ttLib.tables._c_m_a_p import cmap_format_0

from tests.factories import DEJAVU_SANS, make_text_image


def make_mojibake_pdf(path: Path, lines: list[str]) -> Path:
    """Russian set in an 8-bit Cyrillic TrueType font without ToUnicode, as old Windows PDFs are.

    The font reaches its Cyrillic glyphs through cp1251 byte codes in a (1,0) cmap, so the
    page shows Russian while extraction gives Latin-1 letters (``Ïðèâåò`` for ``Привет``).
    """
    font = _cp1251_font()
    content = b"BT /F1 22 Tf 60 760 Td 30 TL " + b" ".join(_show(line) for line in lines) + b" ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        _stream(content),
        b"<< /Type /Font /Subtype /TrueType /BaseFont /CyrDejaVu /FontDescriptor 6 0 R >>",
        b"<< /Type /FontDescriptor /FontName /CyrDejaVu /Flags 4 /FontBBox [-1021 -463 1793 1232]"
        b" /ItalicAngle 0 /Ascent 928 /Descent -236 /CapHeight 700 /StemV 80 /FontFile2 7 0 R >>",
        _stream(font, b"/Length1 %d" % len(font)),
    ]
    path.write_bytes(_pdf(objects))
    return path


def _show(line: str) -> bytes:
    escaped = line.encode("cp1251").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    return b"(" + escaped + b") '"


def _cp1251_font() -> bytes:
    font = TTFont(str(DEJAVU_SANS))
    unicode_glyphs = font.getBestCmap()
    codes = {}
    for code in range(32, 256):
        char = bytes([code]).decode("cp1251", errors="ignore")
        if char and ord(char) in unicode_glyphs:
            codes[code] = unicode_glyphs[ord(char)]
    subsetter = subset.Subsetter(subset.Options(notdef_outline=True, name_IDs=["*"]))
    subsetter.populate(glyphs=sorted(set(codes.values())))
    subsetter.subset(font)
    table = cmap_format_0(0)
    table.platformID, table.platEncID, table.language, table.cmap = 1, 0, 0, codes
    font["cmap"].tables = [table]
    font["post"].formatType = 3.0  # no glyph names: nothing to map back to Unicode
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def _pdf(objects: list[bytes]) -> bytes:
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def add_scan_page(document: pymupdf.Document, text: str, hidden_text: str | None = None) -> None:
    """An image-only page (a scan of ``text``), optionally with an invisible OCR layer over it."""
    image = make_text_image(text, (1600, 600), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    page = document.new_page(width=576, height=216)
    page.insert_image(page.rect, stream=buffer.getvalue())
    if hidden_text is not None:
        page.insert_text((20, 100), hidden_text, fontsize=14, render_mode=3)


def add_text_page(document: pymupdf.Document, lines: list[str], rotate: int = 0, size: float = 14) -> None:
    page = document.new_page(width=595, height=842)
    for number, line in enumerate(lines):
        page.insert_text(
            (60, 80 + number * 2 * size), line, fontsize=size, fontname="dejavu", fontfile=str(DEJAVU_SANS)
        )
    page.set_rotation(rotate)


def save(document: pymupdf.Document, path: Path, subset: bool = True) -> Path:
    if subset:  # small files; but subsetting remaps a few code points (U+FFFD comes back as U+14FC)
        document.subset_fonts()
    document.save(path, garbage=3, deflate=True)
    document.close()
    return path


def replace_page_content(source: Path, target: Path, index: int, content: bytes) -> Path:
    """A copy of ``source`` whose page ``index`` draws ``content`` instead of its own stream."""
    document = pymupdf.open(source)
    page = document[index]
    for xref in page.get_contents()[1:]:
        document.update_stream(xref, b"")
    document.update_stream(page.get_contents()[0], content)
    document.save(target)
    document.close()
    return target
