"""Exactly one beat: a Redis lock held (and refreshed) for as long as the scheduler runs.

Two beats would send every nightly ingestion and reconcile twice; the lock
makes a second ``ocrq beat`` refuse to start instead.
"""

from __future__ import annotations

import os
import socket
import threading

import redis

from ocrq.errors import ConfigurationError

LOCK_KEY = "ocrq:beat:lock"
LOCK_TTL_S = 60


class BeatLock:
    def __init__(self, broker_url: str, ttl_s: int = LOCK_TTL_S) -> None:
        self.client = redis.Redis.from_url(broker_url)
        self.ttl_s = ttl_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()

    def acquire(self) -> None:
        if not self.client.set(LOCK_KEY, self.owner, nx=True, ex=self.ttl_s):
            holder = (self.client.get(LOCK_KEY) or b"?").decode()
            raise ConfigurationError(f"another beat is running ({holder}); only one may run at a time")
        threading.Thread(target=self._refresh, name="beat-lock", daemon=True).start()

    def release(self) -> None:
        self._stop.set()
        if (self.client.get(LOCK_KEY) or b"").decode() == self.owner:
            self.client.delete(LOCK_KEY)

    def _refresh(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            self.client.set(LOCK_KEY, self.owner, xx=True, ex=self.ttl_s)
