"""Find the documents a job names: files as given, folders walked recursively."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

HASH_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path
    """Absolute, resolved: what workers open."""
    relpath: str
    """Relative to its input root (prefixed by the root's name when a job has several roots)."""
    sha256: str | None = None
    """Known up front only where a producer hashed the file already (inbox deduplication)."""


def walk_sources(inputs: Iterable[Path], exclude: Iterable[Path] = ()) -> list[SourceFile]:
    """Every non-hidden entry under the inputs that is not a folder, in a stable order.

    Dangling or looping links, FIFOs, devices and links to folders are kept:
    ingesting them fails them as ``not_a_file``, so a batch never drops an
    entry without a trace. ``exclude`` keeps ocrq's own output folder and
    database out of a batch run on the folder that contains them.
    """
    roots = [Path(p).resolve() for p in inputs]
    excluded = {Path(p).resolve() for p in exclude}
    prefix_roots = len(roots) > 1
    sources: list[SourceFile] = []
    for root in roots:
        prefix = root.name if prefix_roots else ""
        sources.extend(_sources_under(root, excluded, prefix))
    return sources


def _sources_under(root: Path, excluded: set[Path], prefix: str) -> Iterator[SourceFile]:
    if not root.is_dir():
        yield SourceFile(root, str(Path(prefix) / root.name))
        return
    for path in _walk_files(root, excluded):
        yield SourceFile(path, str(Path(prefix) / path.relative_to(root)))


def _walk_files(root: Path, excluded: set[Path]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        linked = [d for d in dirnames if (here / d).is_symlink()]  # os.walk does not follow them
        walked = (d for d in dirnames if d not in linked and _visible(d) and (here / d) not in excluded)
        dirnames[:] = sorted(walked)
        for name in sorted([*filenames, *linked]):
            path = here / name
            if _visible(name) and path not in excluded:
                yield path


def _visible(name: str) -> bool:
    return not name.startswith(".")


def sha256_of(path: Path) -> str:
    """Streamed, so a 2 GB scan never sits in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
