"""Identify a document by its first bytes, never by its name.

Batches arrive from scanners, mail attachments and shared drives where file
names lie (a PNG called ``.pdf``, a Word file called ``.tif``). Choosing the
renderer from the content keeps a misnamed file working and lets a file we
cannot handle fail with a message that says what it actually is.
"""

from __future__ import annotations

import errno
import stat
from pathlib import Path

from ocrq.errors import EmptyDocument, NotAFile, SourceMissing, UnsupportedType
from ocrq.schemas import DocumentType

HEAD_BYTES = 1024
"""PDF readers accept junk before ``%PDF-`` within the first 1024 bytes (PDF 1.7, H.3)."""

BMP_INFO_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
"""Valid DIB header lengths: checking one makes ``BM`` (two letters) a real signature."""

PREFIX_SIGNATURES: tuple[tuple[bytes, DocumentType], ...] = (
    (b"\x89PNG\r\n\x1a\n", DocumentType.PNG),
    (b"\xff\xd8\xff", DocumentType.JPEG),
    (b"II*\x00", DocumentType.TIFF),
    (b"MM\x00*", DocumentType.TIFF),
    (b"II+\x00", DocumentType.TIFF),  # BigTIFF
    (b"MM\x00+", DocumentType.TIFF),  # BigTIFF
    (b"GIF87a", DocumentType.GIF),
    (b"GIF89a", DocumentType.GIF),
)

CONTROL_BYTES = bytes(set(range(32)) - {9, 10, 12, 13}) + b"\x7f"
"""Bytes that plain text (tabs, newlines and form feeds aside) does not contain."""

KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (DOCX, ODT, XLSX, EPUB or plain ZIP)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (DOC, XLS, PPT)"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
    (b"AT&TFORM", "a DjVu document"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "an executable (ELF)"),
)


def sniff_type(path: Path) -> DocumentType:
    """The document type the file's content declares, whatever its extension says."""
    head = _read_head(path)
    found = _match_signature(head)
    if found is None:
        raise UnsupportedType(
            f"{path.name} is not a PDF or a supported image: it looks like {_describe(head)}"
        )
    return found


def _read_head(path: Path) -> bytes:
    """The first bytes, after making sure the path names a readable, non-empty regular file."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            linked_folder = stat.S_ISDIR(info.st_mode) and path.is_symlink()
            kind = "a link to a folder (not followed)" if linked_folder else _kind(info.st_mode)
            raise NotAFile(f"{path} is not a regular file: {kind}")
        if info.st_size == 0:
            raise EmptyDocument(f"{path.name} is empty (0 bytes)")
        with path.open("rb") as file:
            return file.read(HEAD_BYTES)
    except FileNotFoundError as exc:
        if path.is_symlink():
            raise NotAFile(f"{path} is a dangling symbolic link (to {_link_target(path)})") from exc
        raise SourceMissing(f"{path} does not exist") from exc
    except PermissionError as exc:
        raise SourceMissing(f"{path} cannot be read: permission denied") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAFile(f"{path} is a symbolic link loop") from exc
        raise SourceMissing(f"{path} cannot be read: {exc.strerror or exc}") from exc


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


def _link_target(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return "an unreadable target"


def _match_signature(head: bytes) -> DocumentType | None:
    for prefix, doc_type in PREFIX_SIGNATURES:
        if head.startswith(prefix):
            return doc_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return DocumentType.WEBP
    if _is_bmp(head):
        return DocumentType.BMP
    if b"%PDF-" in head:
        return DocumentType.PDF
    return None


def _is_bmp(head: bytes) -> bool:
    if not head.startswith(b"BM") or len(head) < 18:
        return False
    return int.from_bytes(head[14:18], "little") in BMP_INFO_HEADER_SIZES


def _describe(head: bytes) -> str:
    """A short human guess at what the bytes are, for the error message."""
    for prefix, description in KNOWN_OTHERS:
        if head.startswith(prefix):
            return description
    text = _as_text(head)
    if text is not None:
        return _describe_text(text)
    return f"unknown binary data (first bytes {head[:8].hex(' ')})"


def _as_text(head: bytes) -> str | None:
    """The bytes as text if nearly none are control codes (any 8-bit encoding counts as text)."""
    controls = len(head) - len(head.translate(None, CONTROL_BYTES))
    if controls > len(head) // 100:
        return None
    return head.decode("utf-8", errors="replace")


def _describe_text(text: str) -> str:
    start = text.lstrip().lower()
    if start.startswith(("<!doctype html", "<html")):
        return "an HTML page"
    if start.startswith("<svg") or ("<svg" in start and start.startswith("<?xml")):
        return "an SVG image"
    if start.startswith("<?xml"):
        return "an XML file"
    snippet = " ".join(text.split())[:40]
    return f"plain text ({snippet!r})"
