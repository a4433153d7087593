"""Exactly one beat: redis-py's ``Lock``, held (and refreshed) for as long as the scheduler runs.

Two beats would send every nightly ingestion and reconcile twice; the lock
makes a second ``ocrq beat`` refuse to start instead. Redis restarted empty
forgets the lock; the refresher then takes it again under the same token
within seconds, so a beat started afterwards still refuses. Should another
beat have taken it in that gap, this one stops rather than run beside it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress

import redis
from redis.exceptions import LockError, LockNotOwnedError, RedisError

from ocrq.errors import ConfigurationError

LOCK_KEY = "ocrq:beat:lock"
LOCK_TTL_S = 60
REFRESH_MAX_S = 2.0

log = logging.getLogger(__name__)


def _stop_this_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class BeatLock:
    def __init__(
        self, broker_url: str, ttl_s: int = LOCK_TTL_S, on_lost: Callable[[], None] = _stop_this_process
    ) -> None:
        self.client = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock = self.client.lock(LOCK_KEY, timeout=ttl_s, thread_local=False)
        self.every = min(ttl_s / 3, REFRESH_MAX_S)
        self.on_lost = on_lost
        self._stop = threading.Event()

    def acquire(self) -> None:
        if not self.lock.acquire(blocking=False, token=self.owner):
            raise ConfigurationError(f"another beat is running ({self.holder()}); only one may run at a time")
        threading.Thread(target=self._refresh, name="beat-lock", daemon=True).start()

    def release(self) -> None:
        self._stop.set()
        with suppress(LockError, RedisError):  # expired, taken over, or Redis away: nothing of ours to free
            self.lock.release()

    def holder(self) -> str:
        holder = self.client.get(LOCK_KEY) or b"?"
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    def _refresh(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self._keep()
            except RedisError as error:  # Redis away: take the lock again when it is back
                log.warning("beat lock not refreshed (%s); retrying", type(error).__name__)

    def _keep(self) -> None:
        try:
            self.lock.reacquire()
            return
        except LockNotOwnedError:
            pass
        if self.lock.acquire(blocking=False, token=self.owner):
            log.warning("the beat lock was gone (Redis restarted?); taken again")
            return
        log.error("another beat (%s) holds the lock now; stopping this one", self.holder())
        self._stop.set()
        self.on_lost()
