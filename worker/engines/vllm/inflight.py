"""How many requests to keep open at a vLLM server: enough to keep it full, not so many it queues.

A fixed cap is either too small for a big server or, with several GPU workers
on one server, builds a queue inside vLLM that only adds latency (and loses
work when the server dies). ``LoadWatcher`` reads the server's own
``vllm:num_requests_waiting`` and moves this client's cap AIMD-style: up while
nothing waits, down when the queue grows past a small target.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

LOAD_METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
)
GROW_DIVISOR = 8
SHRINK_FACTOR = 0.75


class AdaptiveLimit:
    """A semaphore whose size can move between ``floor`` and ``ceiling`` while in use."""

    def __init__(self, ceiling: int, floor: int = 1) -> None:
        self.ceiling, self.floor = ceiling, max(1, min(floor, ceiling))
        self.limit = ceiling
        self.in_use = 0
        self._changed = threading.Condition()

    def acquire(self, timeout: float | None = None) -> bool:
        with self._changed:
            if not self._changed.wait_for(lambda: self.in_use < self.limit, timeout):
                return False
            self.in_use += 1
            return True

    def release(self) -> None:
        with self._changed:
            self.in_use -= 1
            self._changed.notify()

    def resize(self, limit: int) -> None:
        with self._changed:
            self.limit = max(self.floor, min(self.ceiling, limit))
            self._changed.notify_all()


def next_limit(limit: int, waiting: float, target_waiting: int, floor: int, ceiling: int) -> int:
    """Additive increase while the server has nothing queued, multiplicative decrease past the target."""
    if waiting > target_waiting:
        return max(floor, int(limit * SHRINK_FACTOR))
    if waiting == 0:
        return min(ceiling, limit + max(1, limit // GROW_DIVISOR))
    return limit


class LoadWatcher:
    """Polls the server's queue every ``interval_s`` and resizes the limit; idle without metrics."""

    def __init__(
        self,
        read_waiting: Callable[[], float | None],
        limit: AdaptiveLimit,
        interval_s: float,
        target_waiting: int,
    ) -> None:
        self.read_waiting, self.limit = read_waiting, limit
        self.interval_s, self.target_waiting = interval_s, target_waiting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ocrq-vllm-load", daemon=True)

    def start(self) -> LoadWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            waiting = self.read_waiting()
            if waiting is not None:
                limit = self.limit
                limit.resize(
                    next_limit(limit.limit, waiting, self.target_waiting, limit.floor, limit.ceiling)
                )


def parse_load(metrics_text: str) -> dict[str, float]:
    """The load figures from vLLM's Prometheus text (summed over label sets)."""
    load: dict[str, float] = {}
    for line in metrics_text.splitlines():
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name in LOAD_METRICS:
            load[name] = load.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return load
