"""The adaptive in-flight cap: grows while the server has nothing queued, shrinks when its queue grows."""

from __future__ import annotations

import statistics
import threading
import time

from bench.capacity_server import Capacity, capacity_server
from ocrq.worker.engines.vllm.client import ClientConfig, VllmClient
from ocrq.worker.engines.vllm.inflight import AdaptiveLimit, next_limit, parse_load

PAYLOAD = {"model": "bench", "messages": [{"role": "user", "content": "page"}]}


def test_next_limit_is_aimd_around_the_target() -> None:
    assert next_limit(16, waiting=0, target_waiting=4, floor=1, ceiling=32) == 18  # grow while idle
    assert next_limit(32, waiting=0, target_waiting=4, floor=1, ceiling=32) == 32  # never past the ceiling
    assert next_limit(16, waiting=3, target_waiting=4, floor=1, ceiling=32) == 16  # a short queue is fine
    assert next_limit(16, waiting=9, target_waiting=4, floor=1, ceiling=32) == 12  # back off
    assert next_limit(1, waiting=9, target_waiting=4, floor=1, ceiling=32) == 1


def test_a_smaller_limit_holds_new_requests_back_until_enough_return() -> None:
    limit = AdaptiveLimit(ceiling=4)
    assert all(limit.acquire(timeout=0) for _ in range(3))
    limit.resize(2)
    assert limit.acquire(timeout=0.05) is False  # 3 in use, 2 allowed
    limit.release()
    limit.release()
    assert limit.acquire(timeout=0.05) is True


def test_vllm_metrics_are_read_by_name() -> None:
    text = (
        "# HELP x\n"
        'vllm:num_requests_waiting{model_name="a"} 3.0\n'
        'vllm:num_requests_waiting{model_name="b"} 2.0\n'
    )
    assert parse_load(text) == {"vllm:num_requests_waiting": 5.0}


def test_two_workers_keep_a_server_full_without_a_growing_queue() -> None:
    """Two clients with 16 threads each against 4 slots: fixed caps keep ~28 requests queued inside
    the server; adaptive caps bring that down to a few while the slots stay busy."""
    fixed, _ = _queue_under_load(adapt_every_s=0.0, seconds=1.5)
    adaptive, utilisation = _queue_under_load(adapt_every_s=0.05, seconds=5.0)
    assert fixed >= 20
    assert adaptive <= fixed / 3, (fixed, adaptive)
    assert utilisation >= 0.9


def _queue_under_load(adapt_every_s: float, seconds: float) -> tuple[float, float]:
    """Mean requests waiting in the server over the second half of the run, and its utilisation."""
    with capacity_server(slots=4, seconds=0.1, served_name="bench") as server:
        config = ClientConfig(server.url, max_in_flight=16, adapt_every_s=adapt_every_s, target_waiting=2)
        clients = [VllmClient(config) for _ in range(2)]
        samples = _hammer(clients, server, seconds)
        for client in clients:
            client.close()
    return statistics.mean(samples[len(samples) // 2 :]), server.utilisation()


def _hammer(clients: list[VllmClient], server: Capacity, seconds: float) -> list[int]:
    stop = time.monotonic() + seconds

    def work(client: VllmClient) -> None:
        while time.monotonic() < stop:
            client.chat(PAYLOAD)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients for _ in range(16)]
    for thread in threads:
        thread.start()
    samples = []
    while time.monotonic() < stop:
        samples.append(server.waiting)
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    return samples
