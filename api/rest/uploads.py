"""How files come in: a multipart upload streamed to disk under a size cap, or server-side paths.

Uploads are written as they arrive (never whole in memory, never spooled to a
temporary file first) and the byte count is checked on every chunk, so an
oversize body is refused after at most one chunk beyond the cap. Server-side
paths are resolved (symlinks and ``..`` included) and must land under an
allowed root, each file found in a folder as well.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from ocrq.errors import PathNotAllowed, RequestError, SourceMissing, TooLarge
from ocrq.worker.documents.sources import SourceFile, walk_sources

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FIELD_LIMIT_BYTES = 64 * 1024
"""Non-file form fields (the options JSON) are small; anything bigger is refused."""
UNSAFE_NAME = re.compile(r"[^\w.\- ()\[\]+,@]+")


@dataclass
class UploadLimits:
    max_bytes: int
    max_files: int


@dataclass
class ReceivedForm:
    sources: list[SourceFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def new_upload_dir(root: Path) -> Path:
    """A fresh folder per submission: uploads of different jobs never collide."""
    folder = root.resolve() / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def discard(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def safe_name(filename: str, taken: set[str]) -> str:
    """The client's base name, made harmless (no folders, no leading dot) and unique in the job."""
    base = UNSAFE_NAME.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .") or "upload"
    name, number = base[:200], 1
    while name in taken:
        number += 1
        name = f"{number}-{base[:200]}"
    taken.add(name)
    return name


class MultipartUpload:
    """python-multipart callbacks: file parts go to disk, the rest into small strings."""

    def __init__(self, folder: Path, limits: UploadLimits) -> None:
        self.folder, self.limits = folder, limits
        self.form = ReceivedForm()
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._file: BinaryIO | None = None
        self._field: tuple[str, bytearray] | None = None
        self._taken: set[str] = set()
        self._writes: list[tuple[BinaryIO, bytes]] = []

    async def receive(self, content_type: str, stream: AsyncIterator[bytes]) -> ReceivedForm:
        _, params = parse_options_header(content_type)
        if b"boundary" not in params:
            raise RequestError("multipart body without a boundary")
        parser = MultipartParser(params[b"boundary"], self._callbacks())
        received = 0
        try:
            async for chunk in stream:
                received += len(chunk)
                if received > self.limits.max_bytes:
                    raise TooLarge(f"the upload exceeds {self.limits.max_bytes:,} bytes")
                parser.write(chunk)
                await anyio.to_thread.run_sync(self._flush)
            parser.finalize()
        except FormParserError as error:
            raise RequestError(f"the multipart body is malformed: {error}") from error
        finally:
            self._close()
        return self.form

    def _callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add_header_name(data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header_value(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self._part_data(data[start:end]),
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._disposition, self._file, self._field = b"", None, None

    def _add_header_name(self, data: bytes) -> None:
        self._header_name += data

    def _add_header_value(self, data: bytes) -> None:
        self._header_value += data

    def _header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options and name == "files":
            self._open_file(options[b"filename"].decode("utf-8", "replace"))
        else:
            self._field = (name, bytearray())

    def _open_file(self, filename: str) -> None:
        if len(self.form.sources) >= self.limits.max_files:
            raise TooLarge(f"a job takes at most {self.limits.max_files} files")
        name = safe_name(filename, self._taken)
        path = self.folder / name
        self._file = path.open("wb")
        self.form.sources.append(SourceFile(path, name))

    def _part_data(self, data: bytes) -> None:
        if not data:
            return
        if self._file is not None:
            self._writes.append((self._file, data))
        elif self._field is not None:
            self._field[1].extend(data)
            if len(self._field[1]) > FIELD_LIMIT_BYTES:
                raise TooLarge(f"form field {self._field[0]!r} exceeds {FIELD_LIMIT_BYTES:,} bytes")

    def _part_end(self) -> None:
        if self._field is not None:
            self.form.fields[self._field[0]] = self._field[1].decode("utf-8", "replace")
        elif self._file is not None:
            self._writes.append((self._file, b""))  # closed by _flush after its data

    def _flush(self) -> None:
        """Disk writes, run off the event loop; an empty write marks a finished file."""
        writes, self._writes = self._writes, []
        for file, data in writes:
            if data:
                file.write(data)
            else:
                file.close()

    def _close(self) -> None:
        self._flush()
        if self._file is not None and not self._file.closed:
            self._file.close()


def resolve_paths(paths: list[str], roots: list[Path]) -> list[SourceFile]:
    """Files named by the client, every one (also inside named folders) under an allowed root."""
    if not roots:
        raise PathNotAllowed("this server accepts no server-side paths (OCRQ_API_PATH_ROOTS is empty)")
    real_roots = [root.resolve() for root in roots]
    inputs = [_resolve_one(raw, real_roots) for raw in paths]
    sources = walk_sources(inputs)
    return [_checked(source, real_roots) for source in sources]


def _resolve_one(raw: str, roots: list[Path]) -> Path:
    if "\x00" in raw or not raw.strip():
        raise RequestError("a path is empty or contains a NUL byte")
    candidate = Path(raw) if Path(raw).is_absolute() else roots[0] / raw
    resolved = candidate.resolve()
    if not _inside(resolved, roots):
        raise PathNotAllowed(f"{raw!r} is outside the allowed roots")
    if not resolved.exists():
        raise SourceMissing(f"{raw!r} does not exist")
    return resolved


def _checked(source: SourceFile, roots: list[Path]) -> SourceFile:
    """A file met while walking a folder may be a symlink pointing out of the roots."""
    try:
        resolved = source.path.resolve()
    except (RuntimeError, OSError):  # a link loop: kept as it is, ingest fails it as not_a_file
        return source
    if not _inside(resolved, roots):
        raise PathNotAllowed(f"{source.relpath!r} leads outside the allowed roots")
    return SourceFile(resolved, source.relpath, source.sha256)


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)
