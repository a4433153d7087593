"""The page pipeline: claim a page, read its text layer or render it and run the engine chain, store it.

The in-process runner and the Celery page task both call :meth:`PagePipeline.process`;
it is the only place a page gets OCRed. A PDF page whose own text the gate trusts
(``OCRQ_TEXT_LAYER``) is read from the file and never rendered; the decision is kept on
the page as a note and in the attempts, either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from ocrq.db.models import utcnow
from ocrq.errors import OcrqError, PageRenderError
from ocrq.jobs.attempts import AttemptRecord
from ocrq.jobs.store import JobStore, PageClaim, PageFinish
from ocrq.logs import get_logger, log_context
from ocrq.schemas import DocumentType, PageNote, PageStatus, PageTask
from ocrq.settings import Settings
from ocrq.worker.documents.render import OpenedDocument, PdfDocument, RenderLimits, open_document
from ocrq.worker.engines.chain import ChainOutcome, EngineChain, chain_failure
from ocrq.worker.engines.regions import append_region, read_in_tiles, recognize_region
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.engines.text_layer import ENGINE_NAME, MODEL, LayerReading, read_text_layer, text_pictures
from ocrq.worker.engines.text_layer_gate import AGREEMENT_NEEDED, REJECTED, layer_agreement
from ocrq.worker.metrics import record_page, watch_chain
from ocrq.worker.prepare.hook import PagePreparer, preparer_for

OPEN_DOCUMENTS_PER_THREAD = 2
HOLD_POLL_SECONDS = 0.5
"""How often a page held for a briefly-down primary engine asks the chain again (no request is
sent while the engine's circuit is open: the breaker lets one probe through at a time)..."""
HOLD_POLL_MAX_SECONDS = 5.0
"""...and the longest it waits after its own try failed, so a page does not hammer the engine
(and fill the attempts table) when the breaker lets many tries through."""

log = logging.getLogger(__name__)
page_log = get_logger(__name__)


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
        text_layer: str = "auto",
        preparer: PagePreparer | None = None,
    ) -> None:
        self.store, self.chain, self.task = store, chain, task or PageTask()
        self.documents = OpenDocuments(limits)
        self.sleep: Callable[[float], None] = time.sleep
        self.text_layer = text_layer
        self.preparer = preparer
        """Renders and encodes in other processes (queue workers); None: in this thread."""
        self.stopping: Callable[[], bool] = _never
        """True once the worker shuts down: a page waiting for its primary is handed back, not held."""

    def process(self, page_id: int, *, allow_retry: bool = False) -> PageOutcome:
        """OCR one page; safe to call again for the same page (a no-op once it is finished).

        With ``allow_retry`` (the queue path, retries left), a page whose
        engines all failed retryably is put back instead of failed.
        """
        claim = self.store.claim_page(page_id)
        if claim is None:  # another thread may hold it, prepared entry and all: the sweep is for leftovers
            return PageOutcome(page_id, None)
        with log_context(document_id=claim.document_id, page=claim.index + 1, page_id=page_id):
            return self._process(claim, allow_retry)

    def _process(self, claim: PageClaim, allow_retry: bool) -> PageOutcome:
        page_id = claim.page_id
        finish = self._run(claim, can_requeue=allow_retry)
        _log_finish(finish)
        record_page(finish)
        if (allow_retry or self.stopping()) and finish.error is not None and finish.error.retryable:
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

    def _run(self, claim: PageClaim, can_requeue: bool = False) -> PageFinish:
        clock = time.perf_counter()
        try:
            return self._read(claim, clock, can_requeue)
        except OcrqError as error:
            return PageFinish(None, error, _ms_since(clock), None)
        except Exception as exc:  # a renderer bug fails this page, not the batch
            log.exception("reading page %d of %s failed unexpectedly", claim.index, claim.path)
            failure = PageRenderError(f"unexpected {type(exc).__name__}: {exc}")
            return PageFinish(None, failure, _ms_since(clock), None)

    def _wait_for_primary(self, image: Image.Image, can_requeue: bool) -> ChainOutcome:
        """The chain's reading; while the primary engine is briefly down the page waits for it.

        A page the queue can take back is handed back (held); otherwise it
        waits here, in its own thread, until the primary answers or the page
        itself has waited the grace period, then the chain falls back. The
        page's own clock matters: other pages' successes restart the engine's,
        and a page that alone keeps failing it (a poison page) must not wait
        forever. A worker that is shutting down hands the page back at once.
        """
        attempts: list[AttemptRecord] = []
        deadline = time.monotonic() + self.chain.grace.after_s
        while True:
            may_hold = time.monotonic() < deadline or self.stopping()
            outcome = self.chain.read(image, self.task, may_hold=may_hold)
            attempts += outcome.attempts
            if not outcome.held or can_requeue or self.stopping():
                return ChainOutcome(outcome.result, attempts, outcome.held)
            self.sleep(min(HOLD_POLL_MAX_SECONDS, HOLD_POLL_SECONDS * 2 ** len(attempts)))

    def _read(self, claim: PageClaim, clock: float, can_requeue: bool = False) -> PageFinish:
        document = self.documents.get(claim.path, claim.doc_type)
        notes: list[PageNote] = []
        attempts: list[AttemptRecord] = []
        if self.text_layer != "off" and isinstance(document, PdfDocument):
            reading, attempt = self._read_layer(document, claim.index)
            if reading.result is not None and reading.doubt:
                return self._settle_doubt(document, claim.index, reading, attempt, clock)
            if reading.result is not None:
                return self._with_pictures(document, claim.index, reading, [attempt], clock)
            notes, attempts = list(reading.notes), [attempt]
        if document.needs_tiles(claim.index):
            return self._read_tiles(document, claim.index, notes, attempts, clock)
        image, render_notes = self._render(document, claim)
        render_ms = _ms_since(clock)
        outcome = self._wait_for_primary(image, can_requeue)
        attempts = attempts + outcome.attempts
        if outcome.held:
            return PageFinish(None, self.chain.held_error(), render_ms, image.size, attempts)
        if outcome.result is None:
            return PageFinish(None, chain_failure(outcome.attempts), render_ms, image.size, attempts)
        outcome.result.notes[:0] = notes + render_notes
        return PageFinish(outcome.result, None, render_ms, image.size, attempts)

    def _read_tiles(
        self,
        document: OpenedDocument,
        index: int,
        notes: list[PageNote],
        attempts: list[AttemptRecord],
        clock: float,
    ) -> PageFinish:
        tiled = read_in_tiles(self.chain, document, index, self.task)
        attempts = attempts + tiled.attempts
        if tiled.result is None:
            return PageFinish(None, chain_failure(tiled.attempts), tiled.render_ms, tiled.size, attempts)
        tiled.result.notes[:0] = notes + tiled.notes
        return PageFinish(tiled.result, None, tiled.render_ms, tiled.size, attempts)

    def _settle_doubt(
        self, document: PdfDocument, index: int, reading: LayerReading, attempt: AttemptRecord, clock: float
    ) -> PageFinish:
        """A layer the gate doubts is used only if the page's OCR finds mostly the same words."""
        layer = reading.result
        assert layer is not None
        image, render_notes = document.render_with_notes(index, self.chain.image_mode)
        render_ms = _ms_since(clock)
        ocr, tried = self.chain.recognize(image, self.task)
        agreement = layer_agreement(layer.text, ocr.text) if ocr else 1.0
        if ocr is None or agreement >= AGREEMENT_NEEDED:
            layer.notes.append(
                PageNote(
                    "text_layer_checked", f"the layer and the OCR agree on {agreement:.0%} of their words"
                )
            )
            return PageFinish(layer, None, render_ms, reading.size, [attempt, *tried])
        why = f"disagrees_with_ocr: the layer and the OCR agree on {agreement:.0%} of words ({reading.doubt})"
        rejected = replace(attempt, outcome="rejected", error_code=REJECTED, error_message=why)
        ocr.notes[:0] = list(dict.fromkeys([PageNote(REJECTED, why), *reading.damage, *render_notes]))
        return PageFinish(ocr, None, render_ms, image.size, [rejected, *tried])

    def _with_pictures(
        self,
        document: PdfDocument,
        index: int,
        reading: LayerReading,
        attempts: list[AttemptRecord],
        clock: float,
    ) -> PageFinish:
        """A layer page showing pictures big enough to hold text: those are rendered and OCRed too."""
        result = reading.result
        assert result is not None
        pictures = text_pictures(reading)
        if not pictures:
            return PageFinish(result, None, None, reading.size, attempts)
        image, _ = document.render_with_notes(index, self.chain.image_mode)
        render_ms = _ms_since(clock)
        for box in pictures:
            found, tried = recognize_region(self.chain, image, box, self.task)
            attempts += tried
            if found is not None:
                append_region(result, found)
        result.notes.append(PageNote("pictures_ocred", f"{len(pictures)} picture(s) on the page were OCRed"))
        return PageFinish(result, None, render_ms, image.size, attempts)

    def _read_layer(self, document: PdfDocument, index: int) -> tuple[LayerReading, AttemptRecord]:
        """The page from its own text, or the gate's reason why not (recorded as an attempt)."""
        started, clock = utcnow(), time.perf_counter()
        only = self.text_layer == "only"
        reading, damage = document.with_page(index, lambda page, zoom: read_text_layer(page, zoom, only))
        reading = reading.with_damage(damage)
        used = reading.result is not None
        attempt = AttemptRecord(
            ENGINE_NAME,
            MODEL,
            started,
            _ms_since(clock),
            "ok" if used else "rejected",
            None if used else reading.verdict.code,
            reading.verdict.message,
        )
        return reading, attempt

    def _render(self, document: OpenedDocument, claim: PageClaim) -> tuple[Image.Image, list[PageNote]]:
        """The page picture for the engines: from the preparation pool when there is one."""
        if self.preparer is not None:
            return self.preparer.page_image(claim), []
        return document.render_with_notes(claim.index, self.chain.image_mode)

    def _forget_prepared(self, claim: PageClaim) -> None:
        if self.preparer is not None:
            self.preparer.finished(claim)


def _log_finish(finish: PageFinish) -> None:
    """One line per page: which engine, how long, or why it failed (ids come from log_context)."""
    engine = finish.result.engine if finish.result else None
    outcome = finish.error.code if finish.error else "done"
    tried = ",".join(f"{attempt.engine}:{attempt.outcome}" for attempt in finish.attempts) or None
    render_ms = round(finish.render_ms or 0)
    page_log.info("page finished", outcome=outcome, engine=engine, attempts=tried, render_ms=render_ms)


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
        watch_chain(chain_factory(settings)),
    )
    preparer = preparer_for(settings, chain, limits, task) if prepare else None
    return PagePipeline(store, chain, limits, task, settings.text_layer, preparer)


def _never() -> bool:
    return False
