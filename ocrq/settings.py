"""Settings read from the environment (``OCRQ_`` prefix) and an optional ``.env``.

Built by :func:`build_settings`, never at import time, so tests and tools can
construct settings with overrides instead of patching module globals.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ocrq.jobs.options import JOB_OVERRIDABLE, result_settings
from ocrq.schemas import PromptMode

KNOWN_ENGINES = ("vllm", "transformers", "tesseract")
OUTPUT_FORMATS = ("md", "json", "txt", "pdf", "alto", "layout")
DEFAULT_OUTPUTS = OUTPUT_FORMATS
"""All of them: together they cost about two page renders, little beside OCR (bench/searchable_pdf.py)."""


def openai_server_root(url: str) -> str:
    """The server's root URL: vLLM's docs give ``http://host:8000/v1`` (the OpenAI SDK's base URL),
    ocrq adds ``/v1/...`` itself; both forms work."""
    return url.strip().rstrip("/").removesuffix("/v1").rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCRQ_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///ocrq.db"
    broker_url: str | None = None
    engines: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(KNOWN_ENGINES))

    render_dpi: int = Field(200, ge=36, le=1200)
    max_page_pixels: int = Field(40_000_000, ge=100_000)
    """Pages over this many pixels at the render DPI: a PDF page is read in overlapping tiles, an image
    is downscaled (README, "What goes in")."""
    max_source_pixels: int = Field(200_000_000, ge=1_000_000)
    """Images whose header declares more pixels are refused without decoding (bombs)."""
    max_file_bytes: int = Field(2 * 1024**3, ge=1)
    max_pages_per_document: int = Field(10_000, ge=1)

    text_layer: Literal["auto", "off", "only"] = "auto"
    """PDF pages' own text: ``auto`` uses it where the gate trusts it and OCRs the rest, ``off`` always
    OCRs, ``only`` never OCRs a PDF page (a rejected layer is kept, with a note saying why)."""

    tesseract_langs: str = "rus+eng"
    tessdata_dir: Path | None = None
    tesseract_detect_orientation: bool = True

    chain_factory: str | None = None
    """``module:function`` building the chain instead of ``OCRQ_ENGINES`` (custom engines, benchmarks)."""

    breaker_failures: int = Field(5, ge=1)
    """Consecutive engine failures that open its circuit (pages skip it)."""
    breaker_reset_seconds: float = Field(30.0, gt=0)
    """The longest an open circuit waits before one page probes the engine again."""
    breaker_first_probe_seconds: float = Field(2.0, gt=0)
    """The first probe after a circuit opens comes this soon; the wait doubles while the engine stays
    down, up to ``breaker_reset_seconds``. A short outage then ends soon after the engine is back."""
    fallback_after_seconds: float = Field(120.0, ge=0)
    """How long pages wait for a failing first engine before the next one reads them (degraded);
    0 falls back at once. A brief vLLM restart then costs time, not quality."""
    page_retries: int = Field(3, ge=0)
    """With a broker: how often a page whose engines all failed retryably is queued again."""
    page_retry_backoff_seconds: float = Field(10.0, ge=0)
    """First retry delay; it doubles with each retry."""

    prompt_mode: PromptMode = PromptMode.LAYOUT_ALL
    """What VLM engines are asked for (dots.ocr's prompt modes); Tesseract reads layout and text anyway."""

    page_workers: int = Field(0, ge=0)
    """In-process page workers; 0 means one per CPU core."""
    prepare_processes: int = Field(-1, ge=-1)
    """Processes that render and encode pages for a queue worker whose first engine is vLLM, so the
    page threads only send bytes: -1 one per core, 0 render in the page threads (bench/vllm_feed.py)."""
    prepare_dir: Path | None = None
    """Where prepared pages wait for their request (one entry per page in flight); default
    /dev/shm/ocrq-prepared (memory, not disk) when there is a /dev/shm, else the temp directory."""

    output_dir: Path = Path("results")
    output_markdown: bool = True
    output_json: bool = True
    outputs: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_OUTPUTS))
    """Result files per document: md, json, txt, pdf (searchable), alto (ALTO XML v4), layout (pictures)."""
    output_pdfa: bool = False
    """Write the searchable PDF as PDF/A-2b (pikepdf prepares and validates it); falls back with a reason."""

    log_level: Literal["", "debug", "info", "warning", "error"] = ""
    """Overrides each command's default (warning; ``-v`` and workers: info). debug shows tracebacks."""
    log_format: Literal["console", "json"] = "console"
    """json: one JSON object per line (timestamp, level, logger, event, job_id/document_id/page)."""

    # --- Celery (used only with a broker) -------------------------------------
    gpu_queue: str = "gpu"
    """Page tasks go here; give each GPU host its own name to pin jobs to it."""
    cpu_queue: str = "cpu"
    page_time_limit: int = Field(900, ge=2)
    """Hard limit for one page task; a page claimed longer ago than this is taken over even while its
    worker lives (an engine truly stuck on it)."""
    page_lease_seconds: int = Field(30, ge=2)
    """A claimed page's lease; its live worker renews it every third of this. A killed worker's pages
    are free again (and re-sent by the reconciler) this long after its last heartbeat."""
    visibility_timeout: int = Field(3600, ge=5)
    """Redis redelivers unacknowledged tasks after this; must exceed the page time limit."""
    reconcile_interval: int = Field(60, ge=5)
    reconcile_grace: int = Field(120, ge=0)
    """Pages enqueued more recently than this are never judged lost."""
    flower_basic_auth: str | None = None
    """``user:password[,user2:password2]`` for Flower."""

    # --- nightly inbox ingestion -----------------------------------------------
    inbox_dir: Path | None = None
    inbox_schedule: str = "0 2 * * *"
    """Crontab (minute hour day month weekday), UTC."""
    inbox_stable_seconds: int = Field(60, ge=0)
    """A file modified more recently than this may still be being written: left for next time."""
    inbox_move: bool = True
    """Move finished sources to ``done/`` or ``failed/`` under the inbox."""

    # --- vLLM engine ----------------------------------------------------------------
    vllm_bind_host: str = "127.0.0.1"
    """Host address ``ocrq vllm up`` publishes the server's port on (0.0.0.0 for other GPU hosts)."""
    vllm_model_urls: dict[str, str] = Field(default_factory=dict)
    """Per-model servers, JSON: ``{"qwen2-vl-2b": "http://gpu2:8011"}``; a job's model picks its server.
    Several servers of one model, comma-separated (here or in ``vllm_url``), are balanced per page."""
    vllm_url: str | None = None
    """Base URL of an OpenAI-compatible vLLM server (``http://host:8000``); unset: no vLLM engine."""
    vllm_model: str = "dots.ocr"
    """Model registry key (``ocrq models``): prompts, pixel rules and sampling come from there."""
    vllm_served_model_name: str | None = None
    """Overrides the registry's served name, for servers started with their own ``--served-model-name``."""
    vllm_api_key: SecretStr | None = None
    vllm_max_in_flight: int = Field(32, ge=1, le=1024)
    """Requests in flight to the server at once; also sizes the page worker pool."""
    vllm_adapt_every_s: float = Field(5.0, ge=0)
    """Read the server's queue this often and move the in-flight cap under the maximum (0: fixed cap)."""
    vllm_target_waiting: int = Field(4, ge=0)
    """Requests allowed to wait inside vLLM before this worker sends fewer."""
    vllm_connect_timeout: float = Field(5.0, gt=0)
    vllm_read_timeout: float = Field(600.0, gt=0)
    """One page's generation, queueing included: a dots.ocr page under load takes tens of seconds."""
    vllm_retries: int = Field(3, ge=0, le=10)
    """Extra tries after a 5xx, a timeout or a cut connection, with exponential backoff and jitter."""
    vllm_backoff_s: float = Field(1.0, ge=0)
    vllm_backoff_max_s: float = Field(20.0, ge=0)
    vllm_ladder_retries: int = Field(2, ge=0, le=6)
    """Extra generations for a looping or truncated page (temperature up, max_tokens adjusted)."""
    vllm_downscale_retries: int = Field(3, ge=0, le=8)
    """Smaller renders to try when the page exceeds the model's context."""
    vllm_drop_page_headers: bool = False
    """Leave Page-header/Page-footer cells out of text and Markdown (they stay in the JSON cells)."""
    vllm_color: bool = False
    """Send pages in colour (RGB); grey by default, which halves our CPU per page."""

    # --- Transformers engine (in-process fallback; needs the transformers extra) ------------------
    transformers_model: str = "dots.ocr"
    """Model registry key (``ocrq models``); loaded from the local HF cache, never downloaded."""
    transformers_model_dir: Path | None = None
    """Load from this directory instead of the HF cache (dots.ocr: no '.' in its name)."""
    transformers_device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    """``auto``: the first visible GPU (bf16) when there is one, else the CPU (fp32)."""
    transformers_8bit: bool = False
    """Deprecated spelling of ``OCRQ_HF_QUANTIZATION=8bit`` (honoured when that is unset)."""
    hf_quantization: Literal["", "none", "8bit", "4bit"] = ""
    """8-/4-bit weights through bitsandbytes (CUDA only) for every model; unset: the registry's choice."""
    hf_quantization_fallback: Literal["full", "refuse"] = "full"
    """Quantisation asked for but impossible here (no CUDA or bitsandbytes): load in full precision
    after one warning line, or refuse the model so the chain moves on."""
    transformers_idle_unload_seconds: float = Field(600.0, ge=0)
    """Release the model (and its GPU memory) after this long without a page; 0 keeps it loaded."""
    transformers_batch_size: int = Field(4, ge=1, le=64)
    """Pages per ``generate`` call (halved automatically when the GPU runs out of memory)."""
    transformers_max_new_tokens: int = Field(0, ge=0)
    """Caps the registry's max_tokens for this engine (slow CPU hosts); 0 keeps the registry's."""
    transformers_stop_vllm: bool = False
    """When the model does not fit next to vLLM, stop the vLLM container first instead of refusing."""
    transformers_ladder_retries: int = Field(2, ge=0, le=6)
    """Extra generations for a looping or truncated page (the vLLM engine's ladder: temperature up,
    max_new_tokens adjusted)."""
    transformers_url: str | None = None
    """A ``serve-hf`` server (``http://gpu2:8100``): the transformers engine runs there, not in-process."""
    transformers_api_key: SecretStr | None = None
    """Bearer token for ``OCRQ_TRANSFORMERS_URL`` (the server's ``--api-key``)."""

    # --- REST API (`ocrq api`) ----------------------------------------------------
    api_path_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """Server-side folders that ``{"paths": [...]}`` may name (comma-separated); empty: paths refused."""
    api_upload_dir: Path = Path("uploads")
    """Uploaded files are stored here, one folder per job; with a broker every worker must see it."""
    api_upload_retention_hours: float = Field(168.0, ge=0)
    """Uploaded sources of finished jobs are deleted after this (results stay); 0 keeps them."""
    api_max_upload_bytes: int = Field(512 * 1024**2, ge=1)
    """One request's uploads together; a larger body is refused with 413 while it streams in."""
    api_max_files_per_job: int = Field(1000, ge=1)
    api_max_pages_per_job: int = Field(5000, ge=1)
    """Pages counted at submission (headers only, nothing rendered); more is refused with 413."""
    api_backlog_limit: int = Field(20_000, ge=0)
    """Unfinished pages plus documents not yet ingested, all jobs; above it, 503 + Retry-After. 0: none."""
    api_retry_after_s: int = Field(30, ge=1)
    api_long_poll_max_s: float = Field(60.0, ge=0)
    """The longest ``?wait=N`` a request may hold a connection for."""
    api_webhook_secret: SecretStr | None = None
    """HMAC-SHA256 key for webhook signatures; unset: jobs with a callback URL are refused."""
    api_webhook_attempts: int = Field(5, ge=1, le=20)
    api_webhook_backoff_s: float = Field(2.0, ge=0)
    """Wait before the second attempt; doubles after each failure."""
    api_webhook_timeout_s: float = Field(10.0, gt=0)
    api_webhook_poll_s: float = Field(1.0, gt=0)
    """How often the API looks for finished jobs whose webhook is due."""
    api_key_max_queued_pages: int = Field(10_000, ge=0)
    """Pages one key may have waiting (its unfinished jobs); over it: 429 + Retry-After. 0: no limit."""
    api_public_url: str | None = None
    """How clients reach this API (``https://ocr.example.org``): webhook payloads carry absolute links."""
    api_behind_tls: bool = False
    """The API is served over HTTPS (directly or by a proxy): responses carry Strict-Transport-Security."""
    webhook_allow_http: bool = False
    """Accept plain ``http://`` callback URLs (``https://`` only by default)."""
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Callback hosts allowed whatever they resolve to: names, ``*.suffix``, addresses or CIDR blocks."""
    webhook_allow_private: bool = False
    """Allow callbacks to private addresses (10/8, 172.16/12, 192.168/16, fc00::/7) for intranet receivers."""

    @field_validator("api_path_roots", "webhook_allow_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    # --- web page (`/`, served by `ocrq api`) -----------------------------------------------
    web_session_secret: SecretStr | None = None
    """Signs the page's session cookies; unset: a random one per process (sign in again after a restart)."""
    web_session_hours: float = Field(12.0, gt=0, le=24 * 30)
    """A sign-in lasts this long (the key itself stays valid until revoked)."""
    flower_url: str | None = None
    """Where users reach Flower (``http://host:5555``); the page's system panel links to it."""

    # --- end REST API ---------------------------------------------------------------

    @field_validator("outputs", mode="before")
    @classmethod
    def _split_outputs(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("outputs")
    @classmethod
    def _known_outputs(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(OUTPUT_FORMATS))
        if unknown:
            raise ValueError(f"unknown output format(s) {unknown}; known: {list(OUTPUT_FORMATS)}")
        return [name for name in OUTPUT_FORMATS if name in value]

    def wants(self, output: str) -> bool:
        """Whether a format is written; ``OCRQ_OUTPUT_JSON``/``_MARKDOWN=false`` still turn those off."""
        switched_off = (output == "md" and not self.output_markdown) or (
            output == "json" and not self.output_json
        )
        return output in self.outputs and not switched_off

    @field_validator("vllm_url", "transformers_url")
    @classmethod
    def _server_root(cls, value: str | None) -> str | None:
        return openai_server_root(value) if value else value

    @field_validator("vllm_model_urls")
    @classmethod
    def _server_roots(cls, value: dict[str, str]) -> dict[str, str]:
        return {model: openai_server_root(url) for model, url in value.items()}

    @field_validator("engines", mode="before")
    @classmethod
    def _split_engines(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("engines")
    @classmethod
    def _known_engines(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(KNOWN_ENGINES))
        if unknown:
            raise ValueError(f"unknown engine(s) {unknown}; known: {list(KNOWN_ENGINES)}")
        if not value:
            raise ValueError("OCRQ_ENGINES names no engine")
        return value

    @model_validator(mode="after")
    def _visibility_exceeds_time_limit(self) -> Settings:
        if self.visibility_timeout <= self.page_time_limit:
            raise ValueError(
                "OCRQ_VISIBILITY_TIMEOUT must exceed OCRQ_PAGE_TIME_LIMIT, or running pages get redelivered"
            )
        return self

    @property
    def embedded(self) -> bool:
        """Without a broker, jobs run in the submitting process."""
        return not self.broker_url

    def result_settings(self) -> dict[str, object]:
        """The settings that change OCR output (stored on each job); which ones: :mod:`ocrq.jobs.options`."""
        return result_settings(self)

    def for_job(self, job_settings: dict[str, object]) -> Settings:
        """This host's settings with a job's own choices (engines, DPI, model, prompt) on top.

        A job records its :meth:`result_settings` when submitted (the API lets a
        client choose some); a worker on another host honours them.
        """
        changes = {key: job_settings[key] for key in JOB_OVERRIDABLE if key in job_settings}
        return self.model_validate(self.model_dump() | changes) if changes else self

    def hf_quantization_name(self) -> str:
        """The host's quantisation wish ("" defers to the registry), the old 8-bit flag included."""
        return self.hf_quantization or ("8bit" if self.transformers_8bit else "")

    def vllm_server_url(self) -> str | None:
        """The server for ``vllm_model``: its own entry in ``vllm_model_urls``, else ``vllm_url``."""
        return self.vllm_model_urls.get(self.vllm_model) or self.vllm_url

    def result_key(self) -> str:
        """Fingerprint of :meth:`result_settings`: equal keys mean reusable results."""
        encoded = json.dumps(self.result_settings(), sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]


DOCKER_SECRETS_DIR = "/run/secrets"


def secrets_dir() -> str | None:
    """Where Docker (compose ``secrets:``) mounts secret files: one file per setting, named like the
    variable (``ocrq_database_url``); the environment and ``.env`` still win. ``OCRQ_SECRETS_DIR``
    points elsewhere."""
    folder = os.environ.get("OCRQ_SECRETS_DIR") or DOCKER_SECRETS_DIR
    return folder if Path(folder).is_dir() else None


def build_settings(**overrides: object) -> Settings:
    """Read settings from the environment, .env and Docker secrets; keyword overrides win."""
    folder = secrets_dir()
    if folder is not None:
        overrides.setdefault("_secrets_dir", folder)
    return Settings(**overrides)  # type: ignore[arg-type]
