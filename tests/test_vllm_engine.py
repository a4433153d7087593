"""The vLLM engine against a misbehaving loopback server: retries, vLLM's error shapes, the ladders."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import pytest
from PIL import Image, ImageDraw

from ocrq.errors import (
    ContextTooLong,
    DegenerateOutput,
    EngineServerError,
    EngineUnavailable,
    ModelNotServed,
    PageImageRejected,
    is_input_error_code,
)
from ocrq.schemas import PageTask, PromptMode
from ocrq.settings import Settings
from ocrq.worker.engines.base import Engine
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.engines.vllm.client import ClientConfig, VllmClient
from ocrq.worker.engines.vllm.engine import EngineOptions, VllmEngine
from ocrq.worker.models.registry import ModelSpec, bundled_registry
from tests.fault_server import (
    FaultServer,
    Step,
    completion,
    flat_error,
    nested_error,
    request_image,
    request_text,
    running_fault_server,
)

PAGE_SIZE = (1654, 2338)  # A4 at 200 DPI
DOTS_PREFIX = "<|img|><|imgpad|><|endofimg|>"


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with running_fault_server() as state:
        yield state


@pytest.fixture
def page() -> Image.Image:
    image = Image.new("RGB", PAGE_SIZE, "white")
    ImageDraw.Draw(image).rectangle((200, 300, 1400, 500), fill="black")
    return image


class Sleeps(list[float]):
    """Backoff pauses the client asked for, recorded instead of slept."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_engine(
    server: FaultServer,
    model: str = "dots.ocr",
    sleeps: Sleeps | None = None,
    options: EngineOptions | None = None,
    **config: Any,
) -> VllmEngine:
    spec: ModelSpec = bundled_registry().get(model)
    settings = {"retries": 2, "backoff_s": 0.01, "read_timeout": 5.0, "connect_timeout": 1.0} | config
    client = VllmClient(
        ClientConfig(server.url, **settings), sleep=sleeps if sleeps is not None else Sleeps()
    )
    return VllmEngine(
        spec, client, "test-model", options or EngineOptions(ladder_retries=2, downscale_retries=3)
    )


def cells_json(cells: list[dict[str, Any]]) -> str:
    return json.dumps(cells, ensure_ascii=False)


def full_frame_cell(request: dict[str, Any]) -> dict[str, Any]:
    """A reply whose one cell covers the whole image the model received (in the model's frame)."""
    width, height = request_image(request).size
    return completion(cells_json([{"bbox": [0, 0, width, height], "category": "Text", "text": "Привет"}]))


# --- what a request looks like ---------------------------------------------------------------------


def test_dots_request_is_built_from_the_registry(server: FaultServer, page: Image.Image) -> None:
    server.queue(Step(body=full_frame_cell))
    engine = make_engine(server)
    result = engine.recognize(page, PageTask())
    request = server.requests[0]
    assert request["model"] == "test-model"
    assert (
        request["max_tokens"] == engine.spec.max_tokens and request["temperature"] == engine.spec.temperature
    )
    assert request_text(request).startswith(DOTS_PREFIX + "Please output the layout information")
    url = request["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = request_image(request).size
    assert sent[0] % 28 == 0 and sent[1] % 28 == 0 and sent[0] * sent[1] <= engine.spec.max_pixels
    assert result.cells[0].bbox == (0, 0, *PAGE_SIZE)  # the model's frame mapped back to page pixels
    assert result.text == "Привет" and result.engine == "vllm" and result.model == "test-model"
    assert (result.tokens_in, result.tokens_out) == (100, 20)
    assert isinstance(engine, Engine)


def test_grounding_sends_the_box_in_the_model_frame(server: FaultServer, page: Image.Image) -> None:
    server.queue(Step(body=completion("Some words")))
    engine = make_engine(server)
    result = engine.recognize(page, PageTask(PromptMode.GROUNDING, (200, 300, 1400, 500)))
    # an A4 page at 200 DPI fits dots.ocr's budget: padded to the 28-px grid, not rescaled, so 1:1
    assert request_image(server.requests[0]).size == (1680, 2352)
    assert request_text(server.requests[0]).endswith("Bounding Box:\n[200, 300, 1400, 500]")
    assert result.text == "Some words" and result.cells[0].bbox == (200, 300, 1400, 500)


def test_grounding_box_is_scaled_when_the_page_is(server: FaultServer) -> None:
    big = Image.new("RGB", (3000, 4000), "white")  # 12 MP: over the budget, so resized
    make_engine(server).recognize(big, PageTask(PromptMode.GROUNDING, (300, 400, 1500, 2000)))
    width, height = request_image(server.requests[0]).size
    sx, sy = width / 3000, height / 4000
    expected = [round(300 * sx), round(400 * sy), round(1500 * sx), round(2000 * sy)]
    assert sx < 0.7 and request_text(server.requests[0]).endswith("Bounding Box:\n" + str(expected))


def test_grey_pages_are_sent_as_greyscale_png(server: FaultServer, page: Image.Image) -> None:
    colour = page.copy()
    colour.putpixel((5, 5), (255, 0, 0))
    engine = make_engine(server, model="qwen2-vl-2b")
    engine.recognize(page, PageTask(PromptMode.TEXT_ONLY))
    engine.recognize(colour, PageTask(PromptMode.TEXT_ONLY))
    assert [request_image(r).mode for r in server.requests] == ["L", "RGB"]


def test_models_without_the_mode_fall_back_to_text_and_crop_for_grounding(
    server: FaultServer, page: Image.Image
) -> None:
    engine = make_engine(server, model="qwen2-vl-2b")
    engine.recognize(page, PageTask(PromptMode.LAYOUT_ALL))
    engine.recognize(page, PageTask(PromptMode.GROUNDING, (200, 300, 1400, 500)))
    full, crop = server.requests
    assert request_text(full) == request_text(crop) == "Read all the text in the image."
    assert request_image(crop).size == (1204, 224)  # the 1200x200 region, padded to the 28-px grid


def test_api_key_is_sent_as_bearer(server: FaultServer, page: Image.Image) -> None:
    make_engine(server, api_key="s3cret").recognize(page, PageTask(PromptMode.TEXT_ONLY))
    assert server.headers[0]["Authorization"] == "Bearer s3cret"


# --- server trouble: retried, then the chain moves on -------------------------------------------------


def test_5xx_is_retried_with_growing_jittered_backoff(server: FaultServer, page: Image.Image) -> None:
    server.queue(Step(500, nested_error(500, "EngineCore died")), Step(503, "upstream busy"))
    sleeps = Sleeps()
    result = make_engine(server, sleeps=sleeps).recognize(page, PageTask(PromptMode.TEXT_ONLY))
    assert result.text == "Hello" and len(server.requests) == 3
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02


def test_persistent_5xx_ends_in_a_retryable_engine_error(server: FaultServer, page: Image.Image) -> None:
    server.queue(*[Step(500, nested_error(500, "boom", "InternalServerError"))] * 3)
    with pytest.raises(EngineServerError, match="boom") as raised:
        make_engine(server).recognize(page, PageTask(PromptMode.TEXT_ONLY))
    assert raised.value.retryable and len(server.requests) == 3


def test_timeouts_are_retried_then_reported(server: FaultServer, page: Image.Image) -> None:
    server.queue(Step(delay=1.0), Step(delay=1.0), Step(delay=1.0))
    started = time.perf_counter()
    with pytest.raises(EngineServerError, match="timed out"):
        make_engine(server, read_timeout=0.3).recognize(page, PageTask(PromptMode.TEXT_ONLY))
    assert len(server.requests) == 3 and time.perf_counter() - started < 3.0


def test_a_timeout_then_an_answer_succeeds(server: FaultServer, page: Image.Image) -> None:
    server.queue(Step(delay=1.0))
    result = make_engine(server, read_timeout=0.3).recognize(page, PageTask(PromptMode.TEXT_ONLY))
    assert result.text == "Hello"


def test_connection_reset_is_retried_then_unavailable(server: FaultServer, page: Image.Image) -> None:
    server.queue(Step(reset=True), Step(reset=True), Step(reset=True))
    with pytest.raises(EngineUnavailable, match="cut the connection") as raised:
        make_engine(server).recognize(page, PageTask(PromptMode.TEXT_ONLY))
    assert raised.value.retryable and len(server.requests) == 3


def test_refused_connection_fails_at_once_without_retries(page: Image.Image) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    client = VllmClient(ClientConfig(f"http://127.0.0.1:{port}", retries=3), sleep=sleeps)
    engine = VllmEngine(bundled_registry().get("dots.ocr"), client)
    with pytest.raises(EngineUnavailable, match="refuses connections") as raised:
        engine.recognize(page, PageTask())
    assert raised.value.retryable and sleeps == []
    assert not engine.client.health()


# --- vLLM's 4xx answers, both error shapes ------------------------------------------------------------


@pytest.mark.parametrize("shape", [nested_error, flat_error])
def test_unloadable_image_is_the_pages_input_error(
    shape: Callable[..., Any], server: FaultServer, page: Image.Image
) -> None:
    message = "Failed to load image: cannot identify image file <_io.BytesIO object at 0x7f>"
    server.queue(Step(400, shape(400, message)))
    with pytest.raises(PageImageRejected) as raised:
        make_engine(server).recognize(page, PageTask())
    assert is_input_error_code(raised.value.code) and len(server.requests) == 1


@pytest.mark.parametrize("shape", [nested_error, flat_error])
def test_unknown_model_fails_fast_naming_what_is_served(
    shape: Callable[..., Any], server: FaultServer, page: Image.Image
) -> None:
    server.queue(Step(404, shape(404, "The model `test-model` does not exist.", "NotFoundError")))
    with pytest.raises(ModelNotServed, match="serves: test-model") as raised:
        make_engine(server).recognize(page, PageTask())
    assert not raised.value.retryable and len(server.requests) == 1


@pytest.mark.parametrize("shape", [nested_error, flat_error])
def test_context_overflow_downscales_aimed_by_vllms_numbers(
    shape: Callable[..., Any], server: FaultServer, page: Image.Image
) -> None:
    message = (
        "This model's maximum context length is 4096 tokens. However, your prompt contains 6000 input "
        "tokens, which exceeds this limit even without any output tokens."
    )
    server.queue(Step(400, shape(400, message)), Step(body=full_frame_cell))
    result = make_engine(server).recognize(page, PageTask())
    first, second = (request_image(r).size for r in server.requests)
    ratio = (second[0] * second[1]) / (first[0] * first[1])
    assert ratio < (4096 - 2048) / 6000 * 1.05  # room kept for the answer
    assert second[0] % 28 == 0 and second[1] % 28 == 0
    assert result.cells[0].bbox == (0, 0, *PAGE_SIZE)  # still page pixels after the smaller render


def test_max_tokens_too_large_shrinks_the_answer_not_the_page(server: FaultServer, page: Image.Image) -> None:
    message = (
        "'max_tokens' or 'max_completion_tokens' is too large: 8192. This model's maximum context length "
        "is 8192 tokens and your request has 5000 input tokens (8192 > 8192 - 5000)."
    )
    server.queue(Step(400, flat_error(400, message)))
    make_engine(server).recognize(page, PageTask(PromptMode.TEXT_ONLY))
    first, second = server.requests
    assert second["max_tokens"] == 3192
    assert request_image(first).size == request_image(second).size


def test_context_overflow_that_persists_gives_up(server: FaultServer, page: Image.Image) -> None:
    message = "The decoder prompt (length 9000) is longer than the maximum model length of 8192."
    server.queue(*[Step(400, nested_error(400, message))] * 4)
    with pytest.raises(ContextTooLong, match="exceeds the model context"):
        make_engine(server).recognize(page, PageTask())
    sizes = [request_image(r).size for r in server.requests]
    areas = [width * height for width, height in sizes]
    assert 2 <= len(areas) <= 4 and all(a > b for a, b in pairwise(areas))


def test_other_4xx_is_an_engine_failure_without_retry(server: FaultServer, page: Image.Image) -> None:
    server.queue(Step(400, nested_error(400, "At most 1 image(s) may be provided in one prompt.")))
    with pytest.raises(Exception, match="At most 1 image") as raised:
        make_engine(server).recognize(page, PageTask())
    assert raised.value.code == "engine_failed" and len(server.requests) == 1  # type: ignore[attr-defined]


# --- the ladder for loops and truncation ----------------------------------------------------------


def test_truncated_json_is_retried_with_more_tokens_and_tokens_add_up(
    server: FaultServer, page: Image.Image
) -> None:
    cells = [{"bbox": [10, 10, 200, 60], "category": "Title", "text": "Report"}]
    cut = cells_json(cells)[:-1] + ', {"bbox": [10, 70, 200, 300], "category": "Text", "text": "Lorem'
    server.queue(
        Step(body=completion(cut, "length", 5000, 8192)),
        Step(body=completion(cells_json(cells), "stop", 5000, 900)),
    )
    result = make_engine(server).recognize(page, PageTask())
    assert server.requests[1]["max_tokens"] == 16384 - 5000  # doubled, capped by the context room
    assert [c.category for c in result.cells] == ["Title"]
    assert (result.tokens_in, result.tokens_out) == (10000, 9092)


def test_looping_output_climbs_the_temperature_and_keeps_the_best(
    server: FaultServer, page: Image.Image
) -> None:
    loop = "<td></td>" * 400
    head = cells_json([{"bbox": [10, 10, 200, 60], "category": "Title", "text": "Итоги"}])[:-1]
    looping = head + ', {"bbox": [10, 70, 900, 900], "category": "Table", "text": "<table><tr>' + loop
    server.queue(*[Step(body=completion(looping, "length"))] * 3)
    result = make_engine(server).recognize(page, PageTask())
    temperatures = [r["temperature"] for r in server.requests]
    assert (
        len(temperatures) == 3 and temperatures == sorted(temperatures) and temperatures[-1] > temperatures[0]
    )
    assert [c.text for c in result.cells] == ["Итоги"]  # the looping table cell was dropped


def test_a_loop_that_clears_up_stops_the_ladder_early(server: FaultServer, page: Image.Image) -> None:
    server.queue(Step(body=completion("Total: " + "_" * 500, "length")), Step(body=completion("Total: 42")))
    result = make_engine(server, model="qwen2-vl-2b").recognize(page, PageTask(PromptMode.TEXT_ONLY))
    assert result.text == "Total: 42" and len(server.requests) == 2


def test_unusable_answers_on_every_rung_give_up_for_this_engine(
    server: FaultServer, page: Image.Image
) -> None:
    server.queue(*[Step(body=completion("I cannot read this document."))] * 3)
    with pytest.raises(DegenerateOutput) as raised:
        make_engine(server).recognize(page, PageTask())
    assert not is_input_error_code(raised.value.code) and len(server.requests) == 3


# --- concurrency and the cap ---------------------------------------------------------------------------


def test_in_flight_cap_bounds_concurrent_requests(server: FaultServer, page: Image.Image) -> None:
    server.queue(*[Step(delay=0.2)] * 8)
    engine = make_engine(server, max_in_flight=3)
    assert engine.max_in_flight == 3
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: engine.recognize(page, PageTask(PromptMode.TEXT_ONLY)), range(8)))
    assert all(r.text == "Hello" for r in results)
    assert server.peak_in_flight == 3


# --- construction and selection ------------------------------------------------------------------------


def test_from_settings_refuses_a_model_the_server_does_not_serve(server: FaultServer) -> None:
    settings = Settings(vllm_url=server.url, vllm_served_model_name="other-model")
    with pytest.raises(ModelNotServed, match="serves test-model, not 'other-model'"):
        VllmEngine.from_settings(settings)


def test_from_settings_learns_max_model_len_and_tolerates_a_down_server(server: FaultServer) -> None:
    server.models = {"test-model": 4096}
    engine = VllmEngine.from_settings(Settings(vllm_url=server.url, vllm_served_model_name="test-model"))
    assert engine._max_model_len == 4096 and engine.client.health()
    down = VllmEngine.from_settings(Settings(vllm_url="http://127.0.0.1:9", vllm_served_model_name="x"))
    assert down.model == "x" and not down.client.health()


def test_chain_skips_vllm_without_url_and_puts_it_first_with_one(server: FaultServer) -> None:
    without = build_chain(Settings(engines=["vllm", "tesseract"]))
    assert [e.name for e in without.engines] == ["tesseract"]
    chain = build_chain(
        Settings(
            engines=["vllm", "tesseract"],
            vllm_url=server.url,
            vllm_served_model_name="test-model",
            vllm_max_in_flight=7,
        )
    )
    assert [e.name for e in chain.engines] == ["vllm", "tesseract"] and chain.max_in_flight == 7
    chain.close()


def test_chain_falls_back_to_tesseract_when_vllm_keeps_failing(server: FaultServer) -> None:
    server.queue(*[Step(500, nested_error(500, "down"))] * 10)
    settings = Settings(
        engines=["vllm", "tesseract"], vllm_url=server.url, vllm_served_model_name="test-model",
        vllm_retries=1, vllm_backoff_s=0.0,
    )  # fmt: skip
    chain = build_chain(settings)
    image = Image.new("RGB", (800, 200), "white")
    result, attempts = chain.recognize(image, PageTask())
    chain.close()
    assert [a.engine for a in attempts] == ["vllm", "tesseract"]
    assert (
        attempts[0].error_code == "engine_server_error"
        and result is not None
        and result.engine == "tesseract"
    )


def test_a_closed_engine_says_so(server: FaultServer, page: Image.Image) -> None:
    engine = make_engine(server)
    engine.close()
    with pytest.raises(EngineUnavailable, match="closed"):
        engine.recognize(page, PageTask(PromptMode.TEXT_ONLY))
    assert server.requests == []


def test_pages_go_grey_unless_colour_is_asked_for(server: FaultServer) -> None:
    """Grey halves render and encode CPU; OCRQ_VLLM_COLOR keeps colour for pages that need it."""
    red_stamp = Image.new("RGB", (600, 200), "white")
    ImageDraw.Draw(red_stamp).rectangle((50, 50, 300, 150), fill=(200, 0, 0))
    grey, colour = make_engine(server), make_engine(server, options=EngineOptions(color=True))
    assert (grey.image_mode, colour.image_mode) == ("L", "RGB")
    for engine in (grey, colour):
        engine.recognize(red_stamp.convert(engine.image_mode), PageTask(PromptMode.TEXT_ONLY))
    sent = [request_image(request) for request in server.requests]
    assert [image.mode for image in sent] == ["L", "RGB"]
    assert sent[1].getpixel((100, 100))[:3] == (200, 0, 0)
