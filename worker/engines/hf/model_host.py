"""Keep one in-process model: load on first use, share it across pages, drop it when idle.

A model costs seconds to load and gigabytes to hold, so it is loaded lazily by the first page that
needs it (in the worker process, never in a prefork parent that only builds the chain to size its
pool), kept for later tasks, and released after ``idle_seconds`` without a page so vLLM (or another
model) can have the GPU back. At most one model is resident per process: loading one releases
any other host's. A host that finds itself in a forked child forgets the parent's model instead of
touching CUDA state that does not survive a fork.

:class:`MicroBatcher` turns concurrent page threads into batched calls: the first waiting thread
collects what arrives within a short window (up to the batch size) and runs it for everyone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

M = TypeVar("M")
T = TypeVar("T")
R = TypeVar("R")

_hosts: weakref.WeakSet[ModelHost[object]] = weakref.WeakSet()
_resident_lock = threading.Lock()


class ModelHost(Generic[M]):
    """Lazily loaded, idle-released holder of one model; ``run`` is serialised."""

    def __init__(
        self,
        load: Callable[[], M],
        release: Callable[[M], None],
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load, self._release, self._clock = load, release, clock
        self.idle_seconds = idle_seconds
        self._lock = threading.RLock()
        self._model: M | None = None
        self._pid = os.getpid()
        self._last_used = 0.0
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.loads = 0
        _hosts.add(self)  # type: ignore[arg-type]

    @property
    def loaded(self) -> bool:
        return self._model is not None and self._pid == os.getpid()

    @property
    def resident(self) -> M | None:
        """The loaded model (for reports), or None; never loads."""
        return self._model if self.loaded else None

    def run(self, work: Callable[[M], R]) -> R:
        """Run ``work`` with the model, loading it first if needed; the idle clock restarts after."""
        if not self.loaded:
            _evict_others(self)
        with self._lock:
            model = self._ensure_loaded()
            try:
                return work(model)
            finally:
                self._last_used = self._clock()

    def unload(self) -> bool:
        """Release the model now (safe when none is loaded); True when one was released."""
        with self._lock:
            model, self._model = self._model, None
            self._stop.set()
        if model is None:
            return False
        self._release(model)
        log.info("model released")
        return True

    def unload_if_idle(self) -> bool:
        with self._lock:
            idle = self._model is not None and self._clock() - self._last_used >= self.idle_seconds
            return self.unload() if idle else False

    def _ensure_loaded(self) -> M:
        if self._model is not None and self._pid != os.getpid():
            self._model = None  # the parent's model: its CUDA state does not survive the fork
        if self._model is None:
            self._model = self._load()
            self._pid, self.loads = os.getpid(), self.loads + 1
            self._start_watcher()
        return self._model

    def _start_watcher(self) -> None:
        if self.idle_seconds <= 0:
            return
        self._stop = threading.Event()
        self._watcher = threading.Thread(
            target=_watch, args=(weakref.ref(self), self._stop, self._poll_seconds()), daemon=True
        )
        self._watcher.start()

    def _poll_seconds(self) -> float:
        return min(max(self.idle_seconds / 4, 0.05), 30.0)

    def _after_fork(self) -> None:
        self._lock = threading.RLock()
        self._model, self._watcher = None, None


def _watch(host_ref: weakref.ref[ModelHost[object]], stop: threading.Event, poll: float) -> None:
    """The idle timer; holds the host weakly so a forgotten engine can still be collected."""
    while not stop.wait(poll):
        host = host_ref()
        if host is None or host.unload_if_idle() or not host.loaded:
            return
        del host


def _evict_others(keep: ModelHost[Any]) -> None:
    """One resident model per process: loading this host's model releases any other host's."""
    with _resident_lock:
        for host in list(_hosts):
            if host is not keep and host.loaded:
                log.info("releasing another engine's model to load a new one")
                host.unload()


def _forget_models_in_child() -> None:
    for host in list(_hosts):
        host._after_fork()


os.register_at_fork(after_in_child=_forget_models_in_child)


@dataclass(slots=True)
class _Slot(Generic[T, R]):
    item: T
    done: bool = False
    result: R | None = None
    error: BaseException | None = None


@dataclass(slots=True)
class MicroBatcher(Generic[T, R]):
    """Many threads submit single items; one of them runs batches of up to ``max_batch`` for all."""

    run_batch: Callable[[list[T]], list[R]]
    max_batch: int = 1
    window_seconds: float = 0.02
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _pending: list[_Slot[T, R]] = field(default_factory=list)
    _leading: bool = False
    running: int = 0
    """Items in the batch being run now (``serve-hf`` reports it as vLLM's num_requests_running)."""

    @property
    def waiting(self) -> int:
        """Items submitted and not yet in a running batch (vLLM's num_requests_waiting)."""
        return len(self._pending)

    def submit(self, item: T) -> R:
        """The item's result (or its exception), whichever thread ended up running it."""
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._pending.append(slot)
            self._cond.notify_all()
        while not self._wait_or_lead(slot):
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _wait_or_lead(self, slot: _Slot[T, R]) -> bool:
        """True when the slot is done; False when this thread should lead the next batch."""
        with self._cond:
            while not slot.done and self._leading:
                self._cond.wait()
            if slot.done:
                return True
            self._leading = True
            return False

    def _lead(self) -> None:
        try:
            batch = self._collect()
            self._fulfil(batch)
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()

    def _collect(self) -> list[_Slot[T, R]]:
        """Wait briefly for companions (pages arrive together from the pool), then take a batch."""
        deadline = time.monotonic() + self.window_seconds
        with self._cond:
            while len(self._pending) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        return batch

    def _fulfil(self, batch: list[_Slot[T, R]]) -> None:
        self.running = len(batch)
        try:
            results = self.run_batch([slot.item for slot in batch])
        except BaseException as error:  # every waiter gets the batch's failure, nobody hangs
            for slot in batch:
                slot.error, slot.done = error, True
            return
        finally:
            self.running = 0
        for slot, result in zip(batch, results, strict=True):
            slot.result, slot.done = result, True
