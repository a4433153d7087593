"""The vLLM engine: dots.ocr and other vision-language models behind vLLM's OpenAI-compatible server.

Per page: resize with the model's rule, send one chat completion, read the answer (layout JSON or
text). Two bounded recoveries happen here, because only the engine knows the page and the model:

* the page exceeds the context → render it smaller (by vLLM's own token numbers) and ask again;
* the generation looped or was cut by ``max_tokens`` → climb a ladder (temperature up, or more
  output tokens when there is room), keeping the best answer; give up only when none is usable.

Server trouble (down, 5xx, timeouts) is the client's to retry and then to report as a retryable
error, so a circuit breaker can wrap this engine and the chain can fall back per page.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import httpx
from PIL import Image

from ocrq.errors import ConfigurationError, ContextOverflow, ContextTooLong, EngineUnavailable, ModelNotServed
from ocrq.schemas import PageResult, PageTask
from ocrq.settings import Settings
from ocrq.worker.engines.ladder import Rung, Step, climb
from ocrq.worker.engines.vllm.balance import BalancedClient, client_for
from ocrq.worker.engines.vllm.client import ClientConfig, Completion, VllmClient
from ocrq.worker.engines.vllm.request import (
    PreparedImage,
    PromptChoice,
    build_payload,
    choose_prompt,
    prepare_image,
    prompt_text,
    read_reply,
)
from ocrq.worker.models.registry import ModelSpec, Registry, bundled_registry
from ocrq.worker.ocr_output.reading import Reading, page_result
from ocrq.worker.prepare.entries import model_input_for

log = logging.getLogger(__name__)

MIN_OUTPUT_TOKENS = 64
"""Below this, a page cannot say much: shrinking the image beats shrinking the answer."""
BLIND_DOWNSCALE = 0.5
"""Pixel factor when vLLM's message gives no token numbers to aim with."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    ladder_retries: int = 2
    downscale_retries: int = 3
    drop_page_headers: bool = False
    color: bool = False
    """Pages go grey unless asked: half the rendering and encoding CPU, and most scans are grey anyway."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        return cls(
            settings.vllm_ladder_retries,
            settings.vllm_downscale_retries,
            settings.vllm_drop_page_headers,
            settings.vllm_color,
        )


@dataclass(slots=True)
class _Page:
    """One page's request inputs, kept across the ladder's rungs."""

    image: Image.Image
    task: PageTask
    choice: PromptChoice
    budget: int
    """Pixel budget; shrinks when the page overflows the context."""
    prepared_at: dict[int, PreparedImage] = field(default_factory=dict)


def shrink_for(
    overflow: ContextOverflow, prepared: PreparedImage, rung: Rung, min_pixels: int
) -> tuple[int, Rung]:
    """A smaller pixel budget (or a smaller max_tokens) that should fit, aimed by vLLM's numbers."""
    limit, prompt = overflow.limit, overflow.prompt_tokens
    pixels = prepared.plan.target[0] * prepared.plan.target[1]
    if overflow.output_too_large and limit:
        room = limit - (prompt or limit // 2)
        if room >= MIN_OUTPUT_TOKENS:
            return pixels, replace(rung, max_tokens=room)
    ratio = BLIND_DOWNSCALE
    if limit and prompt:
        ratio = min(0.9, max(0.1, (limit - min(rung.max_tokens, limit // 2)) / prompt))
    budget = max(min_pixels, int(pixels * ratio))
    if budget >= pixels:
        raise ContextTooLong(f"page cannot shrink below {pixels} px to fit: {overflow.message}")
    return budget, rung


class VllmEngine:
    """:class:`~ocrq.worker.engines.base.Engine` for one model on one vLLM server; thread-safe."""

    name = "vllm"
    model_hint = "set OCRQ_VLLM_SERVED_MODEL_NAME (or OCRQ_VLLM_MODEL) to match"
    url_setting = "OCRQ_VLLM_URL"

    def __init__(
        self,
        spec: ModelSpec,
        client: VllmClient | BalancedClient,
        served_name: str | None = None,
        options: EngineOptions | None = None,
    ) -> None:
        self.spec, self.client = spec, client
        self.model = served_name or spec.served_name
        self.options = options or EngineOptions()
        self.max_in_flight = client.config.max_in_flight
        self.image_mode = "RGB" if self.options.color else "L"
        self._max_model_len: int | None = spec.vllm.max_model_len if spec.vllm else None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        registry: Registry | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> VllmEngine:
        """Unset URL: not configured here (the chain skips it). A wrong model: fail now, not per page.
        Several URLs (comma-separated) for the model: one client balancing over them."""
        ClientConfig.from_settings(settings)  # refuses an unset URL before anything is built
        spec = (registry or bundled_registry()).get(settings.vllm_model)
        if spec.vllm is None:
            raise ConfigurationError(f"model {spec.key} cannot be served by vLLM (backends: {spec.backends})")
        engine = cls(
            spec,
            client_for(settings, transport),
            settings.vllm_served_model_name,
            EngineOptions.from_settings(settings),
        )
        engine.check_model()
        return engine

    def check_model(self) -> None:
        """If a server is up and lists its models, ours must be among them (a loading one is let be).

        A server that answers but cannot list models is the wrong URL or port: refusing now beats
        every page failing ``model_not_served`` and silently falling back to a weaker engine. With
        several servers, each must serve the model: pages sent to the odd one would fail there.
        """
        try:
            windows = [self._served_window(server) for server in self.client.servers()]
        except ModelNotServed:
            self.client.close()
            raise
        known = [window for window in windows if window]
        if known:
            self._max_model_len = min(known)

    def _served_window(self, server: VllmClient) -> int | None:
        """The model's context window on ``server`` (None when it cannot say); refuses a wrong server."""
        status = server.models_answer()
        if status is not None and status not in (200, 503):
            why = (
                "it refuses our API key"
                if status in (401, 403)
                else "it is not an OpenAI-compatible server, or not on this URL or port"
            )
            raise ModelNotServed(
                f"the server at {server.config.shown_url} ({self.url_setting}) answers {status} "
                f"to /v1/models: {why}"
            )
        served = server.served_models()
        if served and self.model not in served:
            raise ModelNotServed(
                f"vLLM at {server.config.shown_url} ({self.url_setting}) serves {', '.join(served)}, "
                f"not {self.model!r}; " + self.model_hint
            )
        return served.get(self.model)

    def recognize(self, image: Image.Image, task: PageTask) -> PageResult:
        started = time.perf_counter()
        page = _Page(image, task, choose_prompt(self.spec, task), self.spec.max_pixels)
        first = Rung(self.spec.temperature, self.spec.max_tokens)
        done = climb(first, self.options.ladder_retries, lambda rung: self._step(page, rung))
        tokens = (done.tokens_in, done.tokens_out)
        return page_result(
            done.best(self.model), task, engine=self.name, model=self.model, tokens=tokens, started=started
        )

    def close(self) -> None:
        self.client.close()

    def _step(self, page: _Page, rung: Rung) -> Step:
        """One rung: a request that fits the context, read the way the model writes."""
        completion, prepared, rung = self._fitting_request(page, rung)
        reading = self._read(completion, page.choice, prepared)
        return Step(
            reading, rung, completion.prompt_tokens, completion.completion_tokens, self._room(completion)
        )

    def _fitting_request(self, page: _Page, rung: Rung) -> tuple[Completion, PreparedImage, Rung]:
        """Send the page, shrinking it (or its max_tokens) while vLLM says it exceeds the context;
        the smaller pixel budget is kept for the page's later rungs."""
        for _ in range(self.options.downscale_retries + 1):
            prepared = self._prepared(page, page.budget)
            try:
                return self._send(page, prepared, rung), prepared, rung
            except ContextOverflow as overflow:
                last = overflow
                page.budget, rung = shrink_for(overflow, prepared, rung, self.spec.min_pixels)
                log.info(
                    "page over the context; retrying at %d px, max_tokens %d", page.budget, rung.max_tokens
                )
        raise ContextTooLong(
            f"page still exceeds the context after {self.options.downscale_retries} downscales: "
            + last.message
        )

    def _prepared(self, page: _Page, budget: int) -> PreparedImage:
        """Ladder rungs resend the same pixels: resize and encode once per pixel budget (or not at all
        here, when a preparation process already did it for this render)."""
        if budget not in page.prepared_at:
            ready = None if page.choice.crop else model_input_for(page.image, self.spec.key, budget)
            page.prepared_at[budget] = ready or prepare_image(page.image, self.spec, budget, page.choice.crop)
        return page.prepared_at[budget]

    def _send(self, page: _Page, prepared: PreparedImage, rung: Rung) -> Completion:
        text = prompt_text(self.spec, page.choice, page.task, prepared.plan)
        return self.client.chat(build_payload(self.model, self.spec, text, prepared.data_url, rung))

    def _read(self, completion: Completion, choice: PromptChoice, prepared: PreparedImage) -> Reading:
        return read_reply(
            self.spec,
            choice,
            completion.content,
            completion.finish_reason,
            prepared.plan,
            self.options.drop_page_headers,
        )

    def _room(self, completion: Completion) -> int | None:
        if self._max_model_len is None or completion.prompt_tokens is None:
            return None
        return self._max_model_len - completion.prompt_tokens


def vllm_engine(settings: Settings) -> VllmEngine:
    """The factory :mod:`ocrq.worker.engines.selection` uses; ``EngineUnavailable`` when no URL is set."""
    if not settings.vllm_server_url():
        raise EngineUnavailable("no vLLM server for this model (OCRQ_VLLM_URL / OCRQ_VLLM_MODEL_URLS)")
    return VllmEngine.from_settings(settings)
