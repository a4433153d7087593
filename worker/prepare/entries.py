"""Prepared pages on disk (memory-backed by default): one directory per page and settings.

An entry holds the page's render as raw PGM/PPM (cheap to write, opened lazily: only a fallback
engine ever reads the pixels back) and, for the first engine, its encoded request image. Entries
are written under a temporary name and renamed into place, so a reader sees a whole entry or none;
a redelivered page finds its entry and is not prepared again. Entries are removed when their page
is finished, and :func:`sweep` removes those a dead worker left behind.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ocrq.worker.engines.vllm.request import PreparedImage

RENDER_NAME = "page.pnm"
MODEL_INPUT_NAME = "model_input.pickle"
META_NAME = "meta.pickle"
DEFAULT_SHM = Path("/dev/shm")


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """What the page thread needs without reading pixels."""

    dpi: tuple[float, float] | None
    render_ms: float
    prepare_ms: float
    model_key: str | None
    """The registry model the model input was made for (None: render only)."""
    budget: int | None


def default_root() -> Path:
    base = (
        DEFAULT_SHM
        if DEFAULT_SHM.is_dir() and os.access(DEFAULT_SHM, os.W_OK)
        else Path(tempfile.gettempdir())
    )
    return base / "ocrq-prepared"


def entry_path(root: Path, scope: str, page_id: int, source: Path, index: int) -> Path:
    """Named by everything that makes the pixels: ``scope`` (database and result settings), the page,
    and the file as it is now, so workers of other databases (tests, other deployments) sharing the
    root never meet, and a file replaced in place is prepared anew."""
    try:
        stat = source.stat()
        version = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        version = "missing"
    name = f"{scope}|{page_id}|{source}|{index}|{version}"
    return root / f"{page_id}-{hashlib.sha256(name.encode()).hexdigest()[:24]}"


def write_entry(final: Path, image: Image.Image, meta: EntryMeta, model_input: PreparedImage | None) -> None:
    """Write into a scratch directory, then rename: concurrent writers of one page keep one entry."""
    scratch = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}")
    scratch.mkdir(parents=True)
    try:
        image.save(scratch / RENDER_NAME, "PPM")
        if model_input is not None:
            (scratch / MODEL_INPUT_NAME).write_bytes(pickle.dumps(model_input, pickle.HIGHEST_PROTOCOL))
        (scratch / META_NAME).write_bytes(pickle.dumps(meta, pickle.HIGHEST_PROTOCOL))
        scratch.rename(final)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
        if not (final / META_NAME).exists():
            raise


def read_meta(entry: Path) -> EntryMeta | None:
    try:
        return pickle.loads((entry / META_NAME).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError):
        return None


def open_render(entry: Path, meta: EntryMeta) -> Image.Image:
    """The render, opened lazily: size and mode from the header; pixels read only if asked for."""
    image = Image.open(entry / RENDER_NAME)
    if meta.dpi is not None:
        image.info["dpi"] = meta.dpi
    return image


def model_input_for(image: Image.Image, model_key: str, budget: int) -> PreparedImage | None:
    """The encoded request image prepared next to this render, if it was made for this model and size."""
    filename = getattr(image, "filename", "")
    if not filename or Path(filename).name != RENDER_NAME:
        return None
    entry = Path(filename).parent
    meta = read_meta(entry)
    if meta is None or meta.model_key != model_key or meta.budget != budget:
        return None
    try:
        return pickle.loads((entry / MODEL_INPUT_NAME).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError):
        return None


def discard(entry: Path) -> None:
    shutil.rmtree(entry, ignore_errors=True)


def sweep(root: Path, older_than_s: float) -> int:
    """Remove entries (and half-written scratch directories) untouched for ``older_than_s``."""
    if not root.is_dir():
        return 0
    cutoff, removed = time.time() - older_than_s, 0
    for entry in root.iterdir():
        try:
            stale = entry.stat().st_mtime < cutoff
        except OSError:
            continue
        if stale:
            discard(entry)
            removed += 1
    return removed
