"""What a preparation process does for one page: render it, encode the first engine's request image,
write both as an entry. Runs in a child process; only small picklable values cross the pipe.

Each process keeps its last few documents open (MuPDF handles are per process), so consecutive
pages of one document skip the reopen.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ocrq.errors import OcrqError, PageRenderError
from ocrq.schemas import DocumentType
from ocrq.worker.documents.render import OpenedDocument, RenderLimits, open_document
from ocrq.worker.engines.vllm.request import PreparedImage, prepare_image
from ocrq.worker.models.registry import ModelSpec
from ocrq.worker.prepare.entries import EntryMeta, write_entry

OPEN_DOCUMENTS = 2


@dataclass(frozen=True, slots=True)
class PrepareOrder:
    entry: Path
    path: Path
    doc_type: DocumentType
    index: int
    mode: str
    limits: RenderLimits
    spec: ModelSpec | None
    """The first engine's model, whose request image is made here (None: render only)."""
    budget: int | None


@dataclass(frozen=True, slots=True)
class PrepareFailure:
    """An error as plain values: exception classes with their own ``__init__`` do not unpickle."""

    code: str
    message: str


_documents: OrderedDict[tuple[Path, DocumentType, RenderLimits], OpenedDocument] = OrderedDict()


def prepare_page(order: PrepareOrder) -> PrepareFailure | None:
    """Make the page's entry; a page that cannot be rendered comes back as its error, not a crash."""
    try:
        _prepare(order)
    except OcrqError as error:
        return PrepareFailure(error.code, error.message)
    except Exception as exc:  # a renderer bug fails this page, not the process
        return PrepareFailure(PageRenderError.code, f"unexpected {type(exc).__name__}: {exc}")
    return None


def _prepare(order: PrepareOrder) -> None:
    clock = time.perf_counter()
    image = _document(order).render(order.index, order.mode)
    render_ms = (time.perf_counter() - clock) * 1000
    model_input = _model_input(image, order)
    dpi = image.info.get("dpi")
    meta = EntryMeta(
        tuple(dpi) if dpi else None,
        render_ms,
        (time.perf_counter() - clock) * 1000,
        order.spec.key if model_input is not None and order.spec else None,
        order.budget,
    )
    write_entry(order.entry, image, meta, model_input)


def _model_input(image: Image.Image, order: PrepareOrder) -> PreparedImage | None:
    if order.spec is None or order.budget is None:
        return None
    return prepare_image(image, order.spec, order.budget)


def _document(order: PrepareOrder) -> OpenedDocument:
    key = (order.path, order.doc_type, order.limits)
    if key in _documents:
        _documents.move_to_end(key)
        return _documents[key]
    document = open_document(order.path, order.doc_type, order.limits)
    _documents[key] = document
    if len(_documents) > OPEN_DOCUMENTS:
        _documents.popitem(last=False)[1].close()
    return document


def warm_up() -> int:
    """Run once per process at start, so imports happen before the first page waits on them."""
    import os

    return os.getpid()
