"""Prepared pages on disk (memory-backed by default): one directory per page and settings.

An entry holds the page's render as raw PGM/PPM (cheap to write, opened lazily: only a fallback
engine ever reads the pixels back) and, for the first engine, its encoded request image. Entries
are plain files (JSON and PNM, nothing executable) in a directory private to the worker's user,
written under a temporary name and renamed into place, so a reader sees a whole entry or none;
a redelivered page finds its entry and is not prepared again. Entries are removed when their page
is finished, and :func:`sweep` removes those a dead worker left behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ocrq.worker.engines.vllm.request import PreparedImage
from ocrq.worker.ocr_output.resize import ResizePlan

log = logging.getLogger(__name__)

RENDER_NAME = "page.pnm"
MODEL_INPUT_NAME = "model_input.json"
META_NAME = "meta.json"
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


def private_root(root: Path) -> Path:
    """``root`` made ours alone (0700); another user's or a group-writable one is not trusted: what
    is read back is sent as the page, so a private temporary directory is used instead."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.stat()
    if info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return root
    fallback = Path(tempfile.mkdtemp(prefix="ocrq-prepared-"))
    log.error("%s is not private to this user; preparing pages in %s instead", root, fallback)
    return fallback


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
            (scratch / MODEL_INPUT_NAME).write_text(json.dumps(_model_input_fields(model_input)))
        (scratch / META_NAME).write_text(json.dumps(asdict(meta)))
        scratch.rename(final)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
        if not (final / META_NAME).exists():
            raise


def read_meta(entry: Path) -> EntryMeta | None:
    try:
        fields = json.loads((entry / META_NAME).read_text())
        return EntryMeta(**fields | {"dpi": tuple(fields["dpi"]) if fields["dpi"] else None})
    except (OSError, ValueError, TypeError, KeyError):
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
        return _model_input_from(json.loads((entry / MODEL_INPUT_NAME).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _model_input_fields(prepared: PreparedImage) -> dict[str, Any]:
    plan = prepared.plan
    return {
        "data_url": prepared.data_url,
        "plan": [plan.source, plan.target, plan.offset, plan.padded],
        "encoded_bytes": prepared.encoded_bytes,
        "encode_ms": prepared.encode_ms,
    }


def _model_input_from(fields: dict[str, Any]) -> PreparedImage:
    source, target, offset, padded = fields["plan"]
    plan = ResizePlan(tuple(source), tuple(target), tuple(offset), bool(padded))
    return PreparedImage(fields["data_url"], plan, fields["encoded_bytes"], fields["encode_ms"])


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
