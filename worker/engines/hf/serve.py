"""``ocrq serve-hf``: the Transformers engine as an OpenAI-compatible model server, shaped like vLLM.

Run the fallback as its own process or container (a second, smaller GPU; several workers sharing
one model; a model whose pinned transformers cannot live in the workers' environment) and point
``OCRQ_TRANSFORMERS_URL`` (or ``OCRQ_VLLM_MODEL_URLS``) at it. The routes are vLLM's where vLLM has
them, so ocrq's vLLM client, its breaker and its adaptive in-flight cap work unchanged:
``/v1/models``, ``/v1/chat/completions``, ``/health`` and ``/metrics`` with ``vllm:num_requests_running``
and ``vllm:num_requests_waiting``; ``/models/load`` and ``/models/unload`` are the seeds' multi-model
server's. Concurrent requests for one model are batched into one ``generate`` by the same
:class:`~ocrq.worker.engines.hf.generator.Generator` the in-process engine uses.

Request handlers are plain functions: FastAPI runs them on its thread pool, where the generator's
micro-batcher gathers them.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ocrq.errors import ConfigurationError, EngineUnavailable, InputError, ModelNotServed, OcrqError
from ocrq.worker.engines.hf.answers import PageJob
from ocrq.worker.engines.hf.engine import prepare_page
from ocrq.worker.engines.hf.openai_chat import (
    BadRequest,
    ChatRequest,
    ModelRequest,
    completion_body,
    decode_image,
    error_body,
    model_card,
    page_of,
)
from ocrq.worker.engines.hf.pool import ModelPool, Served

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024**2
OPEN_PATHS = frozenset({"/health", "/metrics"})
"""Open without the API key, as vLLM leaves them (probes and Prometheus)."""


def _status(error: OcrqError) -> tuple[int, str]:
    """HTTP status and vLLM error type for one of our errors."""
    if isinstance(error, ModelNotServed):
        return 404, "NotFoundError"
    if isinstance(error, InputError | ConfigurationError):
        return 400, "BadRequestError"
    if isinstance(error, EngineUnavailable):  # refusals that waiting cannot cure are conflicts, not outages
        return (503, "ServiceUnavailableError") if error.retryable else (409, "ConflictError")
    return 500, "InternalServerError"


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(error_body(status, message, kind), status_code=status)


def chat(pool: ModelPool, request: ChatRequest) -> dict[str, Any]:
    """One page: the model's own resize of the image, its prompt, the request's sampling."""
    served = pool.get(request.model)
    url, prompt = page_of(request)
    page = prepare_page(decode_image(url, pool.options.max_image_pixels), served.spec)
    answer = served.generator.submit(_job(pool, served, page.image, prompt, request))
    return completion_body(served.name, answer)


def _job(pool: ModelPool, served: Served, image: Any, prompt: str, request: ChatRequest) -> PageJob:
    spec, cap = served.spec, pool.options.max_new_tokens
    limit = request.token_limit() or spec.max_tokens
    temperature = spec.temperature if request.temperature is None else request.temperature
    top_p = spec.top_p if request.top_p is None else request.top_p
    text = prompt.replace(spec.image_placeholder, "") if spec.image_placeholder else prompt
    return PageJob(image, text, min(limit, cap) if cap else limit, temperature, top_p)


class LoadCollector:
    """vLLM's load gauges (what the adaptive cap reads) and ocrq's own batching counters, per model."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        labels = ["model_name"]
        running = GaugeMetricFamily(
            "vllm:num_requests_running", "Requests in a running generate.", labels=labels
        )
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting", "Requests waiting for a batch.", labels=labels
        )
        loaded = GaugeMetricFamily(
            "ocrq_hf_model_loaded", "1 while the model's weights are resident.", labels=labels
        )
        batches = CounterMetricFamily("ocrq_hf_generate_batches", "Batched model calls run.", labels=labels)
        pages = CounterMetricFamily("ocrq_hf_generate_pages", "Pages those calls answered.", labels=labels)
        for served in self.pool.models:
            generator, name = served.generator, [served.name]
            running.add_metric(name, generator.running)
            waiting.add_metric(name, generator.waiting)
            loaded.add_metric(name, 1 if served.loaded else 0)
            batches.add_metric(name, generator.batches)
            pages.add_metric(name, generator.pages)
        yield from (running, waiting, loaded, batches, pages)


def create_app(pool: ModelPool, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The server around ``pool``; ``api_key`` (vLLM's ``--api-key``) guards every route but the probes."""
    app = FastAPI(title="ocrq serve-hf", docs_url=None, redoc_url=None)
    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(LoadCollector(pool))
    _guards(app, api_key, max_body_bytes)
    _routes(app, pool, metrics)
    return app


def _guards(app: FastAPI, api_key: str | None, max_body_bytes: int) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        declared = request.headers.get("content-length")
        if request.method == "POST" and not (declared and declared.isdigit()):
            return _error(411, "a Content-Length is required (bodies are size-checked)", "LengthRequired")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return _error(413, f"request body over {max_body_bytes} bytes", "RequestEntityTooLarge")
        if api_key and request.url.path not in OPEN_PATHS:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return await call_next(request)

    @app.exception_handler(OcrqError)
    async def ocrq_error(_request: Request, error: OcrqError) -> JSONResponse:
        status, kind = _status(error)
        return _error(status, error.message, kind)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.error("serve-hf request failed", exc_info=error)
        return _error(500, f"{type(error).__name__}: {error}", "InternalServerError")

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, error: BadRequest) -> JSONResponse:
        return _error(400, str(error), "BadRequestError")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(400, f"invalid request: {error.errors()}", "BadRequestError")


def _routes(app: FastAPI, pool: ModelPool, metrics: CollectorRegistry) -> None:
    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "models": [{"id": s.name, "loaded": s.loaded} for s in pool.models]}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        cards = [model_card(s.name, s.spec.key, s.loaded, _bits(s)) for s in pool.models]
        return {"object": "list", "data": cards}

    @app.post("/v1/chat/completions")
    def completions(request: ChatRequest) -> dict[str, Any]:
        return chat(pool, request)

    @app.post("/models/load")
    def load(request: ModelRequest) -> dict[str, Any]:
        served, seconds = pool.load(request.model)
        note = served.generator.loaded_model.quantization.note if served.generator.loaded_model else None
        return {"model": served.name, "loaded": True, "load_seconds": round(seconds, 3), "note": note}

    @app.post("/models/unload")
    def unload(request: ModelRequest) -> dict[str, Any]:
        served, released, seconds = pool.unload(request.model)
        return {"model": served.name, "unloaded": released, "unload_seconds": round(seconds, 3)}

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics).decode(), media_type="text/plain; version=0.0.4")


def _bits(served: Served) -> int:
    loaded = served.generator.loaded_model
    return loaded.quantization.bits if loaded else served.generator.plan.quantization
