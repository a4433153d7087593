"""Several vLLM servers for one model: least outstanding requests, a breaker per server, page faults
kept to the page. Two real loopback servers stand in for two GPUs' vLLM servers."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageDraw

from ocrq.errors import EngineServerError, ModelNotServed, PageImageRejected
from ocrq.schemas import PageTask, PromptMode
from ocrq.settings import Settings
from ocrq.worker.doctor import check_vllm
from ocrq.worker.engines.vllm.balance import BalancedClient, server_urls
from ocrq.worker.engines.vllm.engine import VllmEngine
from tests.fault_server import FaultServer, Step, nested_error, running_fault_server

TEXT = PageTask(PromptMode.TEXT_ONLY)


@pytest.fixture
def two() -> Iterator[tuple[FaultServer, FaultServer]]:
    with running_fault_server() as first, running_fault_server() as second:
        yield first, second


@pytest.fixture
def page() -> Image.Image:
    image = Image.new("L", (600, 300), 255)
    ImageDraw.Draw(image).rectangle((50, 50, 500, 120), fill=0)
    return image


def engine_over(*servers: FaultServer, **settings: object) -> VllmEngine:
    urls = ", ".join(server.url for server in servers)
    base = {"engines": ["vllm"], "vllm_url": urls, "vllm_served_model_name": "test-model", "vllm_retries": 0}
    return VllmEngine.from_settings(Settings(**base | settings))  # type: ignore[arg-type]


def test_pages_spread_over_the_servers_by_outstanding_requests(
    two: tuple[FaultServer, FaultServer], page: Image.Image
) -> None:
    first, second = two
    for server in two:
        server.queue(*[Step(delay=0.3)] * 8)
    engine = engine_over(first, second, vllm_max_in_flight=8)
    assert isinstance(engine.client, BalancedClient) and engine.max_in_flight == 16
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: engine.recognize(page, TEXT), range(8)))
    engine.close()
    assert all(result.engine == "vllm" for result in results)
    assert (len(first.requests), len(second.requests)) == (4, 4)
    assert first.peak_in_flight == second.peak_in_flight == 4


def test_a_failing_server_opens_its_circuit_and_pages_go_to_the_other(
    two: tuple[FaultServer, FaultServer], page: Image.Image
) -> None:
    broken, healthy = two
    broken.queue(*[Step(500, nested_error(500, "EngineCore died"))] * 10)
    engine = engine_over(broken, healthy, breaker_failures=2, breaker_reset_seconds=60)
    for _ in range(6):
        assert engine.recognize(page, TEXT).engine == "vllm"  # every page answered, none lost to the fault
    engine.close()
    assert len(broken.requests) == 2  # then its circuit opened: no page waited on it again
    assert len(healthy.requests) == 6


def test_every_server_failing_is_the_engines_retryable_error(
    two: tuple[FaultServer, FaultServer], page: Image.Image
) -> None:
    for server in two:
        server.queue(Step(503, nested_error(503, "overloaded")))
    engine = engine_over(*two)
    with pytest.raises(EngineServerError) as raised:
        engine.recognize(page, TEXT)
    engine.close()
    assert raised.value.retryable and [len(server.requests) for server in two] == [1, 1]


def test_a_page_the_server_cannot_read_is_not_sent_to_the_next_server(
    two: tuple[FaultServer, FaultServer], page: Image.Image
) -> None:
    for server in two:
        server.queue(Step(400, nested_error(400, "Failed to load image: cannot identify image file")))
    engine = engine_over(*two)
    with pytest.raises(PageImageRejected):
        engine.recognize(page, TEXT)
    engine.close()
    assert sum(len(server.requests) for server in two) == 1


def test_urls_are_split_and_doctor_checks_each(two: tuple[FaultServer, FaultServer]) -> None:
    first, second = two
    assert server_urls(f" {first.url} ,{second.url},") == [first.url, second.url]
    assert server_urls(None) == []
    checks = check_vllm(Settings(vllm_url=f"{first.url},{second.url}", vllm_served_model_name="test-model"))
    assert len(checks) == 2 and all(check.ok for check in checks)


def test_a_server_serving_another_model_is_refused_before_any_page(
    two: tuple[FaultServer, FaultServer],
) -> None:
    first, second = two
    second.models = {"some-other-model": 8192}
    with pytest.raises(ModelNotServed, match="some-other-model"):
        engine_over(first, second)
    second.models = {"test-model": 4096}
    engine = engine_over(first, second)
    assert engine.client.served_models() == {"test-model": 4096}  # the smaller window holds on both
    engine.close()
