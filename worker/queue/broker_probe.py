"""How many messages the Redis broker holds for a queue: waiting plus delivered-but-unacked.

The reconciler compares this with what the database says is pending; Redis
restarted without persistence (or flushed) holds fewer, and the difference
was lost.
"""

from __future__ import annotations

import json
import time

import redis

UNACKED_HASH = "unacked"
UNACKED_INDEX = "unacked_index"
PRIORITY_SEPARATOR = "\x06\x16"


class RedisBrokerProbe:
    def __init__(self, broker_url: str, visibility_timeout: float) -> None:
        self.client = redis.Redis.from_url(broker_url)
        self.visibility_timeout = visibility_timeout

    def pending(self, queue: str) -> int:
        return self.waiting(queue) + self.unacked(queue)

    def waiting(self, queue: str) -> int:
        """kombu keeps a queue as a list, plus one list per priority level."""
        keys = [queue, *self.client.scan_iter(match=f"{queue}{PRIORITY_SEPARATOR}*")]
        return sum(self.client.llen(key) for key in keys)

    def unacked(self, queue: str) -> int:
        """Delivered, unacknowledged and younger than the visibility timeout.

        Older entries belong to a worker that died: Redis would hand them out
        again eventually, but only when a live worker sweeps (every ~100 s),
        so the reconciler counts them as lost rather than waiting.
        """
        fresh = self.client.zrangebyscore(UNACKED_INDEX, time.time() - self.visibility_timeout, "+inf")
        if not fresh:
            return 0
        payloads = self.client.hmget(UNACKED_HASH, fresh)
        return sum(_routing_key(raw) == queue for raw in payloads if raw is not None)

    def close(self) -> None:
        self.client.close()


def _routing_key(raw: bytes) -> str | None:
    try:
        _payload, _exchange, routing_key = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return routing_key
