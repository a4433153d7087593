"""Which ids the Redis broker still holds messages for, per queue and task: waiting plus recently delivered.

The reconciler compares this with what the database says is waiting; Redis
restarted without persistence (or flushed) holds fewer, and the difference
was lost. It compares ids, not counts: a count is fooled by duplicates (a
re-sent page whose first message survived) and by the reconcile task's own
message, either of which can hide a lost page for good.
"""

from __future__ import annotations

import base64
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

    def held_ids(self, queue: str, task: str, delivered_within: float) -> set[int]:
        """First task argument (page or document id) of every message for ``task`` in ``queue``.

        Delivered-but-unacknowledged messages count only when delivered within
        ``delivered_within`` seconds: older ones for a page still ``queued``
        sit with a dead worker (or in a long ETA) and would hide it until the
        visibility timeout; sending such a page again costs at most a no-op.
        """
        return self._waiting_ids(queue, task) | self._unacked_ids(queue, task, delivered_within)

    def waiting(self, queue: str) -> int:
        """Messages waiting in the queue (every task): kombu keeps one list per priority level."""
        return sum(self.client.llen(key) for key in self._queue_keys(queue))

    def close(self) -> None:
        self.client.close()

    def _queue_keys(self, queue: str) -> list[str | bytes]:
        return [queue, *self.client.scan_iter(match=f"{queue}{PRIORITY_SEPARATOR}*")]

    def _waiting_ids(self, queue: str, task: str) -> set[int]:
        found: set[int] = set()
        for key in self._queue_keys(queue):
            for start in range(0, self.client.llen(key), WAITING_CHUNK):
                for raw in self.client.lrange(key, start, start + WAITING_CHUNK - 1):
                    found |= _first_argument(_loads(raw), task)
        return found

    def _unacked_ids(self, queue: str, task: str, delivered_within: float) -> set[int]:
        since = time.time() - min(delivered_within, self.visibility_timeout)
        fresh: list[bytes] = self.client.zrangebyscore(UNACKED_INDEX, since, "+inf")  # type: ignore[assignment]
        found: set[int] = set()
        for raw in self.client.hmget(UNACKED_HASH, fresh) if fresh else []:
            entry = _loads(raw)
            if isinstance(entry, list) and len(entry) == 3 and entry[2] == queue:
                found |= _first_argument(entry[0], task)
        return found


def _loads(raw: bytes | str | None) -> object:
    try:
        return json.loads(raw) if raw is not None else None
    except (ValueError, TypeError):
        return None


def _first_argument(message: object, task: str) -> set[int]:
    """Celery protocol 2: headers name the task; the base64 JSON body is ``[args, kwargs, embed]``."""
    if not isinstance(message, dict) or (message.get("headers") or {}).get("task") != task:
        return set()
    try:
        args = json.loads(base64.b64decode(message["body"]))[0]
        return {int(args[0])}
    except (KeyError, IndexError, TypeError, ValueError):
        return set()
