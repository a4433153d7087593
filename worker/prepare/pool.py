"""Page preparation in a pool of processes, so a GPU worker's page threads only move bytes.

One ``ocrq worker --role gpu`` process used to render, encode and send every page under one GIL,
which capped it near 13 pages/s whatever the cores or the server (issue 16). Here each page thread
asks the pool for its page and waits; the pool renders and encodes in as many processes as there
are cores and leaves an entry (see :mod:`.entries`) the thread opens lazily. The look-ahead stays
bounded by the page threads: a page is prepared only once a thread has claimed it, so memory is
flat in document length, and the only bytes the thread touches are the encoded request image.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from PIL import Image

from ocrq.errors import PageRenderError, error_from_code
from ocrq.jobs.store import PageClaim
from ocrq.worker.documents.render import RenderLimits
from ocrq.worker.models.registry import ModelSpec
from ocrq.worker.prepare.entries import (
    default_root,
    discard,
    entry_path,
    open_render,
    private_root,
    read_meta,
    sweep,
)
from ocrq.worker.prepare.work import PrepareOrder, prepare_page, warm_up

log = logging.getLogger(__name__)

STALE_AFTER_S = 3600.0
"""Entries older than this belonged to a page nobody finished here (a dead worker, or a retry that
went to another host); swept at start and every ``SWEEP_EVERY`` pages."""
SWEEP_EVERY = 500


class PreparePool:
    """A process pool shared by every pipeline of a worker process; started on first use."""

    def __init__(self, processes: int, root: Path) -> None:
        self.processes, self._wanted_root = processes, root
        self._lock, self._root_lock = threading.Lock(), threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._root: Path | None = None
        self._runs = 0

    @property
    def root(self) -> Path:
        """The entries' directory, made private and swept of leftovers on first use."""
        with self._root_lock:
            if self._root is None:
                self._root = private_root(self._wanted_root)
                self._sweep(self._root)
            return self._root

    def run(self, order: PrepareOrder) -> None:
        """Prepare one page in a child; its error (a bad page) is raised here, in the page's thread."""
        try:
            failure = self._pool().submit(prepare_page, order).result()
        except BrokenProcessPool as error:  # a child died (OOM, a MuPDF crash): restart for later pages
            self._restart()
            raise PageRenderError(f"the page preparation process died: {error}") from error
        if failure is not None:
            raise error_from_code(failure.code, failure.message)
        self._runs += 1
        if self._runs % SWEEP_EVERY == 0:
            self._sweep(self.root)

    def start(self) -> None:
        """Spawn the processes now (at worker start), so the first pages do not wait on their imports."""
        self._pool()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = _start(self.processes)
            return self._executor

    def _sweep(self, root: Path) -> None:
        swept = sweep(root, STALE_AFTER_S)
        if swept:
            log.info("removed %d stale prepared pages from %s", swept, root)

    def _restart(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _start(processes: int) -> ProcessPoolExecutor:
    """Spawned, not forked: the worker has threads (and maybe CUDA), which a fork would not survive."""
    executor = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
    for future in [executor.submit(warm_up) for _ in range(processes)]:
        future.result()
    return executor


class PagePreparer:
    """One pipeline's view of the pool: what to render, and what the first engine wants sent."""

    def __init__(
        self,
        pool: PreparePool,
        scope: str,
        limits: RenderLimits,
        mode: str,
        spec: ModelSpec | None,
        budget: int | None,
    ) -> None:
        self.pool, self.scope, self.limits = pool, scope, limits
        self.mode, self.spec, self.budget = mode, spec, budget

    def page_image(self, claim: PageClaim) -> Image.Image:
        """The page's render, lazily opened; prepared now unless an earlier delivery already did."""
        entry = self._entry(claim)
        meta = read_meta(entry)
        if meta is None:
            self.pool.run(self._order(entry, claim))
            meta = read_meta(entry)
        if meta is None:
            raise PageRenderError(f"page {claim.index + 1}: its prepared entry vanished from {entry}")
        return open_render(entry, meta)

    def finished(self, claim: PageClaim) -> None:
        """The page is stored: its entry is no longer needed."""
        discard(self._entry(claim))

    def _entry(self, claim: PageClaim) -> Path:
        return entry_path(self.pool.root, self.scope, claim.page_id, claim.path, claim.index)

    def _order(self, entry: Path, claim: PageClaim) -> PrepareOrder:
        return PrepareOrder(
            entry, claim.path, claim.doc_type, claim.index, self.mode, self.limits, self.spec, self.budget
        )


_shared_lock = threading.Lock()
_shared: PreparePool | None = None


def shared_pool(processes: int, root: Path | None) -> PreparePool:
    """The worker process's one pool (the first caller's size wins); ``processes`` -1 means per core."""
    global _shared
    with _shared_lock:
        if _shared is None:
            size = processes if processes > 0 else os.cpu_count() or 1
            _shared = PreparePool(size, root or default_root())
        return _shared
