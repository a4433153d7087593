"""Sniffing identifies documents by content: real files made in tmp_path, names chosen to mislead."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from ocrq.errors import EmptyDocument, SourceMissing, UnsupportedType
from ocrq.schemas import DocumentType
from ocrq.worker.documents.sniff import sniff_type
from tests.factories import make_multiframe_tiff, make_text_image, make_text_pdf

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def _saved(**options: object) -> Callable[[Path], Path]:
    def save(path: Path) -> Path:
        settings = dict(options)
        mode = str(settings.pop("mode", "RGB"))
        make_text_image("Sniff me", size=(300, 100)).convert(mode).save(path, **settings)
        return path

    return save


WRITERS: dict[str, tuple[Callable[[Path], Path], DocumentType]] = {
    "pdf": (lambda path: make_text_pdf(path, ["Sniff me"]), DocumentType.PDF),
    "png": (_saved(format="PNG"), DocumentType.PNG),
    "jpeg": (_saved(format="JPEG"), DocumentType.JPEG),
    "tiff-little-endian": (_saved(format="TIFF"), DocumentType.TIFF),
    "tiff-big-endian": (_saved(format="TIFF", mode="I;16B"), DocumentType.TIFF),
    "bigtiff": (_saved(format="TIFF", big_tiff=True), DocumentType.TIFF),
    "tiff-multiframe": (lambda path: make_multiframe_tiff(path, ["one", "two"]), DocumentType.TIFF),
    "webp": (_saved(format="WEBP", lossless=True), DocumentType.WEBP),
    "bmp": (_saved(format="BMP"), DocumentType.BMP),
    "gif87a": (_saved(format="GIF"), DocumentType.GIF),
    "gif89a": (_saved(format="GIF", transparency=0), DocumentType.GIF),
}


@pytest.mark.parametrize("kind", WRITERS)
def test_every_supported_type_is_recognised_from_content_alone(tmp_path: Path, kind: str) -> None:
    write, expected = WRITERS[kind]
    path = write(tmp_path / "document.bin")  # no extension to help
    assert sniff_type(path) is expected


def test_the_signature_variant_is_really_the_one_written(tmp_path: Path) -> None:
    """Guards the parametrised test above: each variant must hit a different branch."""
    heads = {kind: WRITERS[kind][0](tmp_path / kind).read_bytes()[:6] for kind in WRITERS}
    assert heads["tiff-big-endian"][:4] == b"MM\x00*"
    assert heads["bigtiff"][:4] == b"II+\x00"
    assert heads["gif87a"] == b"GIF87a" and heads["gif89a"] == b"GIF89a"


def test_png_bytes_named_pdf_are_a_png(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    make_text_image("not a pdf").save(path, format="PNG")
    assert sniff_type(path) is DocumentType.PNG


def test_pdf_bytes_named_jpg_are_a_pdf(tmp_path: Path) -> None:
    path = make_text_pdf(tmp_path / "photo.jpg", ["really a pdf"])
    assert sniff_type(path) is DocumentType.PDF


def test_pdf_header_after_junk_is_found_within_1024_bytes(tmp_path: Path) -> None:
    pdf = make_text_pdf(tmp_path / "clean.pdf", ["x"]).read_bytes()
    near, far = tmp_path / "near.bin", tmp_path / "far.bin"
    near.write_bytes(b"\x00mail gateway junk\r\n" * 40 + pdf)  # header at byte 800
    far.write_bytes(b"\x00mail gateway junk\r\n" * 60 + pdf)  # header at byte 1200
    assert sniff_type(near) is DocumentType.PDF
    with pytest.raises(UnsupportedType):
        sniff_type(far)


def test_empty_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "zero.pdf"
    path.write_bytes(b"")
    with pytest.raises(EmptyDocument, match="0 bytes"):
        sniff_type(path)


def test_missing_file_and_directory_are_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(SourceMissing, match="does not exist"):
        sniff_type(tmp_path / "gone.pdf")
    with pytest.raises(SourceMissing, match="not a regular file"):
        sniff_type(tmp_path)


def test_a_fifo_is_refused_without_blocking_on_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    with pytest.raises(SourceMissing, match="not a regular file"):
        sniff_type(fifo)


def test_unreadable_file_is_a_missing_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_text_pdf(tmp_path / "secret.pdf", ["x"])

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)  # tests run as root, where chmod 000 still reads
    with pytest.raises(SourceMissing, match="permission denied"):
        sniff_type(path)


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")


OTHERS: dict[str, tuple[Callable[[Path], object], str]] = {
    "text": (lambda p: p.write_text("just text, whatever the name says\n"), "plain text ('just text"),
    "cyrillic": (lambda p: p.write_text("Счёт номер семь\n" * 80), "plain text ('Счёт номер"),
    "text starting BM": (lambda p: p.write_text("BMW parts list\n" * 5), "plain text ('BMW parts"),
    "html": (lambda p: p.write_text("<!DOCTYPE html><html><body>hi</body></html>"), "an HTML page"),
    "svg": (lambda p: p.write_text('<?xml version="1.0"?>\n<svg xmlns="x"/>'), "an SVG image"),
    "zip": (_zip, "a ZIP archive"),
    "binary": (lambda p: p.write_bytes(bytes(range(256)) * 2), "unknown binary data (first bytes 00 01 02"),
}


@pytest.mark.parametrize("kind", OTHERS)
def test_other_content_is_unsupported_and_named(tmp_path: Path, kind: str) -> None:
    write, description = OTHERS[kind]
    path = tmp_path / "document.pdf"
    write(path)
    with pytest.raises(UnsupportedType) as raised:
        sniff_type(path)
    assert description in raised.value.message
    assert raised.value.code == "unsupported_type"


def test_truncated_image_still_sniffs_by_its_header(tmp_path: Path) -> None:
    """Sniffing reads only the head; damage further in is the renderer's business."""
    path = tmp_path / "cut.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    assert sniff_type(path) is DocumentType.PNG


def test_pillow_and_sniffing_agree_on_a_bmp_header(tmp_path: Path) -> None:
    path = tmp_path / "a.bmp"
    Image.new("1", (16, 16)).save(path, format="BMP")
    assert sniff_type(path) is DocumentType.BMP


CORPUS_TYPES = {
    "typewriter-scan.pdf": DocumentType.PNG,  # misleading extension
    "doclaynet-2pages.tif": DocumentType.TIFF,
    "la-precinct-bulletin-table-scan.jpg": DocumentType.JPEG,
    "decompression_bomb.gif": DocumentType.GIF,
    "invalid.pdf": DocumentType.PDF,
    "crazyones.pdf": DocumentType.PDF,
}


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
@pytest.mark.parametrize("name", CORPUS_TYPES)
def test_corpus_files_sniff_as_their_content(name: str) -> None:
    assert sniff_type(CORPUS / name) is CORPUS_TYPES[name]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_zero_byte_pdf_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        sniff_type(CORPUS / "zero-byte.pdf")
