"""One beat only, even across a Redis restart: real ``ocrq beat`` processes on a private redis-server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from tests.queue_harness import Processes, wait_for
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

REDIS_PORT = 22001


def test_a_second_beat_keeps_refusing_after_redis_restarts_empty(tmp_path: Path) -> None:
    server = RedisServer(REDIS_PORT, tmp_path).start()
    env = {"OCRQ_BROKER_URL": server.url, "OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'ocrq.db'}"}
    processes = Processes(env, tmp_path)
    client = redis.Redis(port=REDIS_PORT)
    try:
        first = processes.start("beat", name="beat1")
        wait_for(lambda: client.get("ocrq:beat:lock") is not None, 60, "the first beat's lock")
        token = client.get("ocrq:beat:lock")
        server.restart_empty(down_s=1)
        client = redis.Redis(port=REDIS_PORT)
        wait_for(lambda: client.get("ocrq:beat:lock") == token, 30, "the first beat to take its lock again")
        second = processes.start("beat", name="beat2")
        assert second.wait(60) == 1
        assert "another beat is running" in (tmp_path / "beat2.log").read_text()
        time.sleep(3)
        assert first.poll() is None  # the first beat still runs, and still holds the lock
        assert client.get("ocrq:beat:lock") == token
    finally:
        processes.stop_all()
        server.kill()
