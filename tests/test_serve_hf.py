"""``ocrq serve-hf`` with the tiny Qwen2-VL: a real server process, used by ocrq's own vLLM client.

One server for the module, started by the ``ocrq`` console script with an API key, batches of two
and a long batch window (so two concurrent requests share a ``generate`` whatever the load on this
machine). Its answers are gibberish by construction: the tests assert the protocol, batching,
load/unload, the load figures the adaptive in-flight cap reads, and the engine chain around it.
Guards that need no model (auth, body size) are checked in-process.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from ocrq.db.models import Attempt, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.errors import ModelNotServed, PageImageRejected
from ocrq.schemas import PageTask, PromptMode
from ocrq.settings import Settings
from ocrq.worker.batch import BatchRequest, run_embedded_batch
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.engines.vllm.client import ClientConfig, VllmClient
from ocrq.worker.engines.vllm.engine import VllmEngine
from ocrq.worker.engines.vllm.inflight import parse_load
from ocrq.worker.engines.vllm.request import Rung, build_payload, prepare_image
from tests.factories import make_text_pdf
from tests.hf_support import TINY, TINY_SERVED_NAME, HfServer, running_serve_hf
from tests.vllm_server import free_port

MISSING = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.transformers,
    pytest.mark.skipif(bool(MISSING), reason=f"{MISSING} not importable: pip install -e '.[transformers]'"),
]
KEY = "serve-hf-test-key"
MAX_NEW_TOKENS = 12


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HfServer]:
    flags = ("--max-new-tokens", str(MAX_NEW_TOKENS), "--batch-size", "2", "--batch-window-ms", "1500")
    with running_serve_hf(tiny_model, tmp_path_factory.mktemp("serve-hf"), *flags, api_key=KEY) as running:
        yield running


@pytest.fixture(scope="module")
def page() -> Image.Image:
    image = Image.new("RGB", (420, 600), "white")
    image.paste((0, 0, 0), (40, 60, 380, 90))
    return image


def load(server: HfServer) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    figures = parse_load(text)
    for name in ("ocrq_hf_generate_batches_total", "ocrq_hf_generate_pages_total", "ocrq_hf_model_loaded"):
        found = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
        figures[name] = float(found.group(1)) if found else -1.0
    return figures


def vllm_settings(make_settings: Callable[..., Settings], server: HfServer, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "engines": ["vllm"],
        "vllm_model_urls": {TINY: server.url},  # serve-hf as the vLLM engine's backend for this model
        "vllm_model": TINY,
        "vllm_api_key": KEY,
        "vllm_ladder_retries": 0,
        "vllm_adapt_every_s": 0,
        "prompt_mode": PromptMode.TEXT_ONLY,
        "text_layer": "off",  # the typed test PDFs stand in for scans: the model must read them
    }
    return make_settings(**(base | overrides))


def test_ocrqs_vllm_engine_reads_pages_through_serve_hf(
    server: HfServer, make_settings: Callable[..., Settings], page: Image.Image
) -> None:
    engine = VllmEngine.from_settings(vllm_settings(make_settings, server))
    before = load(server)
    result = engine.recognize(page, PageTask(mode=PromptMode.TEXT_ONLY))
    assert (result.engine, result.model) == ("vllm", TINY_SERVED_NAME)
    assert result.tokens_in is not None and result.tokens_in > (420 * 616) // (
        28 * 28
    )  # image tokens + prompt
    assert result.tokens_out is not None and 1 <= result.tokens_out <= MAX_NEW_TOKENS  # the server's cap
    assert isinstance(result.text, str)
    after = load(server)
    assert after["ocrq_hf_generate_pages_total"] == before["ocrq_hf_generate_pages_total"] + 1
    engine.close()


def test_the_protocol_matches_vllms(server: HfServer, page: Image.Image) -> None:
    cards = httpx.get(f"{server.url}/v1/models", headers=server.headers(), timeout=5).json()["data"]
    assert [(c["id"], c["root"], c["object"]) for c in cards] == [(TINY_SERVED_NAME, TINY, "model")]
    prepared = prepare_image(page, _spec(), 200_000)
    body = build_payload(
        TINY, _spec(), "Read.", prepared.data_url, Rung(0.0, 5)
    )  # the registry key works too
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=server.headers(), timeout=120)
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["object"] == "chat.completion" and reply["model"] == TINY_SERVED_NAME
    usage, choice = reply["usage"], reply["choices"][0]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] <= 5 and choice["finish_reason"] in ("stop", "length")
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    unauthorised = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=10)
    assert unauthorised.status_code == 401  # the key guards the API ...
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200  # ... not the probes
    assert "vllm:num_requests_waiting" in httpx.get(f"{server.url}/metrics", timeout=5).text


def _spec() -> Any:
    from ocrq.worker.models.registry import bundled_registry

    return bundled_registry().get(TINY)


def test_bad_requests_are_named_as_vllm_names_them(
    server: HfServer, make_settings: Callable[..., Settings], page: Image.Image
) -> None:
    client = VllmClient(ClientConfig(server.url, KEY, retries=0))
    corrupt = build_payload(TINY_SERVED_NAME, _spec(), "Read.", "data:image/png;base64,AAAA", Rung(0, 4))
    with pytest.raises(PageImageRejected, match="could not load the page image"):
        client.chat(corrupt)
    fetched = build_payload(TINY_SERVED_NAME, _spec(), "Read.", "http://169.254.169.254/x.png", Rung(0, 4))
    with pytest.raises(PageImageRejected, match="only data URLs"):
        client.chat(fetched)  # never fetched: the server is no proxy into its network
    unknown = build_payload(
        "some/other-model", _spec(), "Read.", prepare_image(page, _spec(), 50_000).data_url, Rung(0, 4)
    )
    with pytest.raises(ModelNotServed, match="does not serve model 'some/other-model'"):
        client.chat(unknown)
    client.close()


def test_load_and_unload_on_demand(server: HfServer, page: Image.Image) -> None:
    def post(path: str, model: str) -> httpx.Response:
        return httpx.post(f"{server.url}{path}", json={"model": model}, headers=server.headers(), timeout=120)

    unloaded = post("/models/unload", TINY).json()
    assert unloaded["model"] == TINY_SERVED_NAME and unloaded["unloaded"] is True
    assert load(server)["ocrq_hf_model_loaded"] == 0.0
    assert httpx.get(f"{server.url}/health", timeout=5).json()["models"] == [
        {"id": TINY_SERVED_NAME, "loaded": False}
    ]
    assert post("/models/unload", TINY).json()["unloaded"] is False  # nothing left to release
    loaded = post("/models/load", TINY_SERVED_NAME).json()
    assert (
        loaded["loaded"] is True
        and loaded["load_seconds"] > 0
        and load(server)["ocrq_hf_model_loaded"] == 1.0
    )
    assert post("/models/load", TINY).json()["load_seconds"] == 0  # already resident
    post("/models/unload", TINY)
    body = build_payload(TINY, _spec(), "Read.", prepare_image(page, _spec(), 50_000).data_url, Rung(0, 3))
    lazy = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=server.headers(), timeout=120)
    assert lazy.status_code == 200 and load(server)["ocrq_hf_model_loaded"] == 1.0  # a request loads it back
    refused = post("/models/load", "phi-3.5-vision")
    assert refused.status_code == 409 and "needs transformers<=4.48" in refused.json()["error"]["message"]
    assert post("/models/load", "no-such-model").status_code == 404


def test_two_concurrent_requests_share_one_generate(server: HfServer, page: Image.Image) -> None:
    body = build_payload(TINY, _spec(), "Read.", prepare_image(page, _spec(), 50_000).data_url, Rung(0, 4))
    before = load(server)
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda _i: httpx.post(
                    f"{server.url}/v1/chat/completions", json=body, headers=server.headers(), timeout=120
                ),
                range(2),
            )
        )
    assert [a.status_code for a in answers] == [200, 200]
    after = load(server)
    assert after["ocrq_hf_generate_pages_total"] - before["ocrq_hf_generate_pages_total"] == 2
    assert after["ocrq_hf_generate_batches_total"] - before["ocrq_hf_generate_batches_total"] == 1
    usages = {a.json()["usage"]["prompt_tokens"] for a in answers}
    assert len(usages) == 1  # left padding is not counted as prompt


def test_the_adaptive_cap_reads_serve_hfs_queue(server: HfServer, page: Image.Image) -> None:
    """Batches of two, eight requests at once: six wait, so the client's AIMD cap comes down."""
    config = ClientConfig(server.url, KEY, max_in_flight=8, adapt_every_s=0.05, target_waiting=0)
    client = VllmClient(config)
    assert client.waiting() == 0.0  # idle: read from /metrics, not unknown
    body = build_payload(
        TINY, _spec(), "Read.", prepare_image(page, _spec(), 50_000).data_url, Rung(0, MAX_NEW_TOKENS)
    )
    limits: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            limits.append(client.slots.limit)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(8) as pool:
        completions = list(pool.map(lambda _i: client.chat(body), range(8)))
    done.set()
    watcher.join()
    client.close()
    assert len(completions) == 8 and all(c.completion_tokens for c in completions)
    assert min(limits) < 8  # the queue serve-hf reported pushed the in-flight cap down


def test_chain_vllm_then_remote_transformers_then_tesseract(
    server: HfServer, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_text_pdf(folder / "two.pdf", ["Invoice 42", "Счёт 42"])
    settings = make_settings(
        engines=["vllm", "transformers", "tesseract"],
        vllm_url=f"http://127.0.0.1:{free_port()}",  # nothing listens: vLLM is down
        vllm_model=TINY,
        vllm_retries=0,
        fallback_after_seconds=0,  # down for good here: fall back at once, no grace to wait out
        transformers_url=server.url,
        transformers_api_key=KEY,
        transformers_model=TINY,
        transformers_ladder_retries=0,
        vllm_adapt_every_s=0,
        breaker_failures=100,
        render_dpi=72,
        prompt_mode=PromptMode.TEXT_ONLY,
        text_layer="off",  # the typed PDF stands in for scans: the chain must read it
    )
    chain = build_chain(settings)
    assert [type(e).__name__ for e in chain.engines] == [
        "VllmEngine",
        "RemoteTransformersEngine",
        "TesseractEngine",
    ]
    chain.close()
    summary = run_embedded_batch(settings, BatchRequest([folder], tmp_path / "out"))
    assert summary["status"] == "done" and summary["counts"]["engines"] == {"transformers": 2}
    sessions = make_session_factory(make_engine(settings.database_url))
    with sessions() as session:
        attempts = [
            (a.engine, a.model, a.outcome)
            for page in session.scalars(select(Page).order_by(Page.index))
            for a in session.scalars(select(Attempt).where(Attempt.page_id == page.id).order_by(Attempt.id))
        ]
    assert attempts == [("vllm", TINY_SERVED_NAME, "error"), ("transformers", TINY_SERVED_NAME, "ok")] * 2
    written = json.loads((tmp_path / "out" / "two.pdf.json").read_text())
    assert [p["engine"] for p in written["pages"]] == ["transformers", "transformers"]


def test_guards_without_a_model(make_settings: Callable[..., Settings], tiny_model: Path) -> None:
    """The API key and the body limit are checked before any model is touched."""
    from ocrq.worker.engines.hf.pool import ModelPool
    from ocrq.worker.engines.hf.serve import create_app

    pool = ModelPool(make_settings(transformers_device="cpu"))
    pool.add(TINY, tiny_model)
    client = TestClient(create_app(pool, api_key="k", max_body_bytes=1000))
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert (
        client.get("/v1/models", headers={"Authorization": "Bearer k"}).json()["data"][0]["loaded"] is False
    )
    big = client.post("/v1/chat/completions", content=b"x" * 2000, headers={"Authorization": "Bearer k"})
    assert big.status_code == 413 and "over 1000 bytes" in big.json()["error"]["message"]
    chunks = client.post(
        "/v1/chat/completions", content=iter([b"x"] * 5), headers={"Authorization": "Bearer k"}
    )
    assert chunks.status_code == 411  # a streamed body of unknown size is not read at all
    two = {"model": TINY, "messages": [{"role": "user", "content": [{"type": "text", "text": "no image"}]}]}
    refused = client.post("/v1/chat/completions", json=two, headers={"Authorization": "Bearer k"})
    assert refused.status_code == 400 and "exactly one image" in refused.json()["error"]["message"]
    assert not pool.models[0].loaded


def test_doctor_reports_the_serve_hf_server(server: HfServer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ocrq.api.cli import cli

    env = {
        "OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}", "OCRQ_BROKER_URL": None, "OCRQ_VLLM_URL": None,
        "OCRQ_ENGINES": "transformers,tesseract", "OCRQ_TRANSFORMERS_URL": server.url,
        "OCRQ_TRANSFORMERS_API_KEY": KEY,
    }  # fmt: skip
    result = CliRunner().invoke(cli, ["doctor"], env=env)
    line = next(line for line in result.stdout.splitlines() if line.split()[1] == "transformers")
    assert result.exit_code == 0, result.output
    assert line.startswith("ok") and "health ok" in line and TINY_SERVED_NAME in line
    down = CliRunner().invoke(
        cli, ["doctor"], env=env | {"OCRQ_TRANSFORMERS_URL": f"http://127.0.0.1:{free_port()}"}
    )
    assert down.exit_code == 1  # the chain's transformers server is down: a required part
