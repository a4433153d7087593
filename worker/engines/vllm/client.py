"""HTTP to one vLLM OpenAI-compatible server: pooling, an in-flight cap, retries, and vLLM's errors.

One ``httpx.Client`` (thread-safe, keep-alive pool) per server, shared by every page-worker
thread; a semaphore caps requests in flight because vLLM never answers 429, it queues, so the
client is the only place that can bound the queue. Errors are read the way vLLM writes them:
``{"error": {...}}`` since 0.10.1, flat ``{"object": "error", ...}`` before, and translated here
into :mod:`ocrq.errors`, never leaking ``httpx`` exceptions.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from ocrq.errors import (
    ConfigurationError,
    ContextOverflow,
    EngineFailed,
    EngineServerError,
    EngineUnavailable,
    ModelNotServed,
    OcrqError,
    PageImageRejected,
)
from ocrq.redaction import mask_text, mask_url
from ocrq.settings import Settings
from ocrq.worker.engines.vllm.inflight import AdaptiveLimit, LoadWatcher, parse_load

log = logging.getLogger(__name__)

_IMAGE_LOAD = re.compile(r"failed to load image|cannot identify image|image file is truncated", re.IGNORECASE)
_CONTEXT = re.compile(r"maximum context length|maximum model length|max_model_len", re.IGNORECASE)
_LIMIT = re.compile(
    r"(?:maximum context length(?: is)?|maximum model length of|max_model_len=)\s*\(?(\d+)", re.IGNORECASE
)
_PROMPT = re.compile(
    r"(?:prompt contains|request has|decoder prompt \(length|input length \()\s*(\d+)", re.IGNORECASE
)
_OUTPUT_TOO_LARGE = re.compile(
    r"max_(?:completion_)?tokens'? (?:or '[a-z_]+' )?is too large|max_tokens=\d+ cannot be greater",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str
    api_key: str | None = None
    max_in_flight: int = 32
    connect_timeout: float = 5.0
    read_timeout: float = 600.0
    retries: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 20.0
    adapt_every_s: float = 0.0
    """How often to read the server's queue and move the cap (0: a fixed cap)."""
    target_waiting: int = 4

    @property
    def shown_url(self) -> str:
        """The server's URL for messages, logs and page errors: credentials masked."""
        return mask_url(self.base_url)

    @classmethod
    def from_settings(
        cls, settings: Settings, url: str | None = None, api_key: SecretStr | None = None
    ) -> ClientConfig:
        """The vLLM server of ``settings``; ``url``/``api_key`` name another server spoken to the same
        way (a ``serve-hf`` for the transformers engine), with the same timeouts and retries."""
        url = url or settings.vllm_server_url()
        if not url:
            raise EngineUnavailable("no vLLM server for this model (OCRQ_VLLM_URL / OCRQ_VLLM_MODEL_URLS)")
        secret = api_key or settings.vllm_api_key
        key = secret.get_secret_value() if secret else None
        return cls(
            url.rstrip("/"),
            key,
            settings.vllm_max_in_flight,
            settings.vllm_connect_timeout,
            settings.vllm_read_timeout,
            settings.vllm_retries,
            settings.vllm_backoff_s,
            settings.vllm_backoff_max_s,
            settings.vllm_adapt_every_s,
            settings.vllm_target_waiting,
        )


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error body in any of vLLM's shapes, reduced to what decisions need."""

    status: int
    message: str
    type: str | None = None


@dataclass(frozen=True, slots=True)
class _Failure:
    error: OcrqError
    transient: bool
    """Worth another try after a pause (5xx, timeout, cut connection)."""


def api_error(response: httpx.Response) -> ApiError:
    """The message of an error response, nested, flat, a bare string, or not JSON at all."""
    try:
        body = response.json()
    except ValueError:
        return ApiError(response.status_code, response.text.strip()[:500] or response.reason_phrase)
    detail = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return ApiError(response.status_code, detail)
    if not isinstance(detail, dict):
        return ApiError(response.status_code, str(detail)[:500])
    message = detail.get("message") or detail.get("detail") or str(detail)[:500]
    return ApiError(response.status_code, str(message), detail.get("type"))


def context_overflow(message: str) -> ContextOverflow | None:
    """vLLM's several context-length messages (0.33 and older) as one error with the numbers found."""
    if not _CONTEXT.search(message):
        return None
    limit, prompt = _LIMIT.search(message), _PROMPT.search(message)
    return ContextOverflow(
        f"page exceeds the model context: {message}",
        int(limit.group(1)) if limit else None,
        int(prompt.group(1)) if prompt else None,
        bool(_OUTPUT_TOO_LARGE.search(message)),
    )


def completion_from(body: object) -> Completion:
    """The first choice and the token counts; a body without them is the server's fault."""
    try:
        choice = body["choices"][0]  # type: ignore[index]
        content = choice["message"].get("content") or ""
        usage = body.get("usage") or {}  # type: ignore[attr-defined]  # any JSON; a bad shape is caught below
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise EngineFailed(f"vLLM answered without a usable choice: {str(body)[:300]}") from error
    return Completion(
        content, choice.get("finish_reason"), usage.get("prompt_tokens"), usage.get("completion_tokens")
    )


class VllmClient:
    """Chat completions against one server; thread-safe, at most ``max_in_flight`` requests at once."""

    def __init__(
        self,
        config: ClientConfig,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config, self._sleep, self._jitter = config, sleep, jitter
        self._closed = False
        self.slots = AdaptiveLimit(config.max_in_flight)
        self._http = httpx.Client(
            base_url=config.base_url,
            transport=transport,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            limits=httpx.Limits(
                max_connections=config.max_in_flight, max_keepalive_connections=config.max_in_flight
            ),
            headers={"Authorization": f"Bearer {config.api_key}"} if config.api_key else None,
        )
        self._watcher = (
            LoadWatcher(self.waiting, self.slots, config.adapt_every_s, config.target_waiting).start()
            if config.adapt_every_s > 0
            else None
        )

    def chat(self, payload: dict[str, Any]) -> Completion:
        """One completion, retrying transient failures with capped exponential backoff and jitter."""
        with self._slot():
            for attempt in range(self.config.retries + 1):
                outcome = self._try(payload)
                if isinstance(outcome, Completion):
                    return outcome
                if not outcome.transient or attempt == self.config.retries:
                    raise outcome.error
                log.info("vLLM request failed (%s), retry %d", outcome.error.message, attempt + 1)
                self._sleep(self.backoff(attempt))
        raise AssertionError("unreachable: the loop returns or raises")

    def backoff(self, attempt: int) -> float:
        """Half fixed, half random ("equal jitter"): spreads retries without ever retrying at once."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_s * 2**attempt)
        return ceiling / 2 + ceiling / 2 * self._jitter()

    def health(self) -> bool:
        """vLLM's ``/health``: 200 once the engine is up; anything else (or no answer) is not ready."""
        try:
            return self._http.get("/health", timeout=self.config.connect_timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def servers(self) -> list[VllmClient]:
        """The one server behind this client (a balanced client has several)."""
        return [self]

    def models_answer(self) -> int | None:
        """The HTTP status of ``/v1/models``; None when the server does not answer at all (down)."""
        try:
            return self._http.get("/v1/models", timeout=self.config.connect_timeout).status_code
        except httpx.HTTPError:
            return None

    def served_models(self) -> dict[str, int | None]:
        """Served model names with their ``max_model_len``; empty when the server cannot say."""
        try:
            response = self._http.get("/v1/models", timeout=self.config.connect_timeout)
            cards = response.json()["data"] if response.status_code == 200 else []
            return {card["id"]: card.get("max_model_len") for card in cards}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return {}

    def waiting(self) -> float | None:
        """Requests queued inside the server (``vllm:num_requests_waiting``); None when it cannot say."""
        try:
            response = self._http.get("/metrics", timeout=self.config.connect_timeout)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return parse_load(response.text).get("vllm:num_requests_waiting")

    def close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.stop()
        self._http.close()

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self.slots.acquire(timeout=self.config.read_timeout):
            raise EngineUnavailable(
                f"no free request slot for {self.config.shown_url} in {self.config.read_timeout}s"
            )
        try:
            yield
        finally:
            self.slots.release()

    def _try(self, payload: dict[str, Any]) -> Completion | _Failure:
        url = self.config.shown_url
        if self._closed:
            return _Failure(EngineUnavailable(f"the client for {url} is closed"), False)
        try:
            response = self._http.post("/v1/chat/completions", json=payload)
        except httpx.ConnectError as error:  # nothing listening: down, or still loading the model
            return _Failure(EngineUnavailable(f"vLLM at {url} refuses connections: {error}"), False)
        except httpx.TimeoutException as error:
            return _Failure(EngineServerError(f"vLLM at {url} timed out ({type(error).__name__})"), True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as error:
            return _Failure(EngineUnavailable(f"vLLM at {url} cut the connection: {error}"), True)
        except httpx.HTTPError as error:
            return _Failure(
                EngineServerError(mask_text(f"vLLM at {url}: {type(error).__name__}: {error}")), True
            )
        return self._answer(response, payload.get("model"))

    def _answer(self, response: httpx.Response, model: object) -> Completion | _Failure:
        if response.status_code == 200:
            try:
                return completion_from(response.json())
            except ValueError as error:
                return _Failure(EngineServerError(f"vLLM sent invalid JSON: {error}"), True)
        return self._rejection(api_error(response), model)

    def _rejection(self, error: ApiError, model: object) -> _Failure:
        """What an error status means for this page and for the engine."""
        if error.status >= 500 or error.status == 429:
            return _Failure(EngineServerError(f"vLLM answered {error.status}: {error.message}"), True)
        if error.status == 404:
            return _Failure(self._not_served(model, error.message), False)
        if error.status in (401, 403):
            return _Failure(
                ConfigurationError(f"vLLM refused the API key (OCRQ_VLLM_API_KEY): {error.message}"), False
            )
        if _IMAGE_LOAD.search(error.message):
            return _Failure(PageImageRejected(f"vLLM could not load the page image: {error.message}"), False)
        overflow = context_overflow(error.message)
        if overflow is not None:
            return _Failure(overflow, False)
        return _Failure(EngineFailed(f"vLLM rejected the request ({error.status}): {error.message}"), False)

    def _not_served(self, model: object, message: str) -> ModelNotServed:
        served = ", ".join(self.served_models()) or "unknown"
        return ModelNotServed(
            f"vLLM at {self.config.shown_url} does not serve model {model!r} (it serves: {served}); "
            f"set OCRQ_VLLM_MODEL or OCRQ_VLLM_SERVED_MODEL_NAME to match --served-model-name. "
            f"Server said: {message}"
        )
