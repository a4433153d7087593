"""The page pipeline: claim a page, render it, run the engine chain, store the outcome.

The in-process runner and the Celery page task both call :meth:`PagePipeline.process`;
it is the only place a page gets OCRed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ocrq.errors import OcrqError, PageRenderError
from ocrq.jobs.store import JobStore, PageClaim, PageFinish
from ocrq.schemas import DocumentType, PageStatus, PageTask
from ocrq.settings import Settings
from ocrq.worker.documents.render import OpenedDocument, RenderLimits, open_document
from ocrq.worker.engines.chain import EngineChain, chain_failure
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.prepare.hook import PagePreparer, preparer_for

OPEN_DOCUMENTS_PER_THREAD = 2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PageOutcome:
    page_id: int
    status: PageStatus | None
    """None when the page had already been finished by an earlier delivery (or was put back)."""
    engine: str | None = None
    retry: bool = False
    """The page went back to the queue: its engines failed in a way that may pass."""


class OpenDocuments:
    """Keeps the last few documents open per thread, so consecutive pages skip the reopen.

    MuPDF handles are not shared across threads; each thread gets its own.
    """

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self._local = threading.local()
        self._all: list[OpenedDocument] = []
        self._lock = threading.Lock()

    def get(self, path: Path, doc_type: DocumentType) -> OpenedDocument:
        cache: OrderedDict[Path, OpenedDocument] = self._thread_cache()
        if path in cache:
            cache.move_to_end(path)
            return cache[path]
        document = open_document(path, doc_type, self.limits)
        cache[path] = document
        with self._lock:
            self._all.append(document)
        if len(cache) > OPEN_DOCUMENTS_PER_THREAD:
            self._forget(cache.popitem(last=False)[1])
        return document

    def close(self) -> None:
        with self._lock:
            documents, self._all = self._all, []
        for document in documents:
            document.close()

    def _thread_cache(self) -> OrderedDict[Path, OpenedDocument]:
        if not hasattr(self._local, "cache"):
            self._local.cache = OrderedDict()
        return self._local.cache

    def _forget(self, document: OpenedDocument) -> None:
        with self._lock:
            self._all.remove(document)
        document.close()


class PagePipeline:
    def __init__(
        self,
        store: JobStore,
        chain: EngineChain,
        limits: RenderLimits,
        task: PageTask | None = None,
        preparer: PagePreparer | None = None,
    ) -> None:
        self.store, self.chain, self.task = store, chain, task or PageTask()
        self.documents = OpenDocuments(limits)
        self.preparer = preparer
        """Renders and encodes in other processes (queue workers); None: in this thread."""

    def process(self, page_id: int, *, allow_retry: bool = False) -> PageOutcome:
        """OCR one page; safe to call again for the same page (a no-op once it is finished).

        With ``allow_retry`` (the queue path, retries left), a page whose
        engines all failed retryably is put back instead of failed.
        """
        claim = self.store.claim_page(page_id)
        if claim is None:  # another thread may hold it, prepared entry and all: the sweep is for leftovers
            return PageOutcome(page_id, None)
        finish = self._run(claim)
        if allow_retry and finish.error is not None and finish.error.retryable:
            self.store.release_page(claim, finish.attempts)  # its prepared entry waits for the retry
            return PageOutcome(page_id, None, retry=True)
        stored = self.store.finish_page(claim, finish)
        self._forget_prepared(claim)
        status = PageStatus.FAILED if finish.error else PageStatus.DONE
        engine = finish.result.engine if finish.result else None
        return PageOutcome(page_id, status if stored else None, engine)

    def close(self) -> None:
        self.documents.close()
        self.chain.close()

    def _run(self, claim: PageClaim) -> PageFinish:
        clock = time.perf_counter()
        try:
            image = self._render(claim)
        except OcrqError as error:
            return PageFinish(None, error, _ms_since(clock), None)
        except Exception as exc:  # a renderer bug fails this page, not the batch
            log.exception("rendering page %d of %s failed unexpectedly", claim.index, claim.path)
            error = PageRenderError(f"unexpected {type(exc).__name__}: {exc}")
            return PageFinish(None, error, _ms_since(clock), None)
        render_ms = _ms_since(clock)
        result, attempts = self.chain.recognize(image, self.task)
        error = None if result else chain_failure(attempts)
        return PageFinish(result, error, render_ms, image.size, attempts)

    def _render(self, claim: PageClaim) -> Image.Image:
        if self.preparer is not None:
            return self.preparer.page_image(claim)
        document = self.documents.get(claim.path, claim.doc_type)
        return document.render(claim.index, self.chain.image_mode)

    def _forget_prepared(self, claim: PageClaim) -> None:
        if self.preparer is not None:
            self.preparer.finished(claim)


def _ms_since(clock: float) -> float:
    return (time.perf_counter() - clock) * 1000


def pipeline_for(
    settings: Settings,
    store: JobStore,
    chain_factory: Callable[[Settings], EngineChain] = build_chain,
    *,
    prepare: bool = False,
) -> PagePipeline:
    """A pipeline configured as ``settings`` say: engines, render limits, what to ask the engines.

    ``prepare`` (queue workers): pages are rendered and encoded in a process pool when
    ``OCRQ_PREPARE_PROCESSES`` allows and the first engine is one that sends images to a server.
    """
    limits, task, chain = (
        RenderLimits.from_settings(settings),
        PageTask(settings.prompt_mode),
        chain_factory(settings),
    )
    preparer = preparer_for(settings, chain, limits, task) if prepare else None
    return PagePipeline(store, chain, limits, task, preparer)
