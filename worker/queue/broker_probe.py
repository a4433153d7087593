"""How many messages of one task the Redis broker holds for a queue: waiting plus delivered-but-unacked.

The reconciler compares this with what the database says is pending; Redis
restarted without persistence (or flushed) holds fewer, and the difference
was lost. Only messages of the task in question count: the reconcile task's
own message (unacked in the CPU queue while it runs) is not a document's.
"""

from __future__ import annotations

import json
import time

import redis

UNACKED_HASH = "unacked"
UNACKED_INDEX = "unacked_index"
PRIORITY_SEPARATOR = "\x06\x16"
WAITING_CHUNK = 1000


class RedisBrokerProbe:
    def __init__(self, broker_url: str, visibility_timeout: float) -> None:
        self.client = redis.Redis.from_url(broker_url)
        self.visibility_timeout = visibility_timeout

    def pending(self, queue: str, task: str) -> int:
        return self.waiting(queue, task) + self.unacked(queue, task)

    def waiting(self, queue: str, task: str | None = None) -> int:
        """kombu keeps a queue as a list, plus one list per priority level.

        With ``task``, only that task's messages count (read in chunks); without, every message (LLEN).
        """
        keys = [queue, *self.client.scan_iter(match=f"{queue}{PRIORITY_SEPARATOR}*")]
        if task is None:
            return sum(self.client.llen(key) for key in keys)
        return sum(self._waiting_in(key, task) for key in keys)

    def _waiting_in(self, key: str | bytes, task: str) -> int:
        found = 0
        for start in range(0, self.client.llen(key), WAITING_CHUNK):
            chunk = self.client.lrange(key, start, start + WAITING_CHUNK - 1)
            found += sum(_task_name(raw) == task for raw in chunk)
        return found

    def unacked(self, queue: str, task: str) -> int:
        """Delivered, unacknowledged and younger than the visibility timeout.

        Older entries belong to a worker that died: Redis would hand them out
        again eventually, but only when a live worker sweeps (every ~100 s),
        so the reconciler counts them as lost rather than waiting.
        """
        fresh = self.client.zrangebyscore(UNACKED_INDEX, time.time() - self.visibility_timeout, "+inf")
        if not fresh:
            return 0
        payloads = self.client.hmget(UNACKED_HASH, fresh)
        return sum(_unacked_is(raw, queue, task) for raw in payloads if raw is not None)

    def close(self) -> None:
        self.client.close()


def _unacked_is(raw: bytes, queue: str, task: str) -> bool:
    try:
        message, _exchange, routing_key = json.loads(raw)
    except (ValueError, TypeError):
        return False
    return routing_key == queue and _headers_task(message) == task


def _task_name(raw: bytes) -> str | None:
    try:
        return _headers_task(json.loads(raw))
    except (ValueError, TypeError):
        return None


def _headers_task(message: object) -> str | None:
    headers = message.get("headers") if isinstance(message, dict) else None
    return headers.get("task") if isinstance(headers, dict) else None
