"""Request and response bodies of the REST API (pydantic), named like the template's families.

The shapes follow ``batch.json`` and the per-document JSON files
(:mod:`ocrq.worker.results.files`), so a script reads the API and the result files alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

from ocrq.schemas import PromptMode


def _as_utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for columns stored in UTC; RFC 3339 needs the offset."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
EngineName = Literal["vllm", "transformers", "tesseract"]
ResultFormat = Literal["md", "json", "jsonl", "txt", "zip"]
WebhookOutcome = Literal["delivered", "failed", "unreachable"]


class ErrorBody(BaseModel):
    code: str = Field(description="Stable code from ocrq's error tree")
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- submission -------------------------------------------------------------------


class JobOptions(BaseModel):
    """How to OCR this job; anything left out takes the server's settings."""

    model_config = ConfigDict(extra="forbid")

    engines: list[EngineName] | None = Field(None, min_length=1, max_length=3, description="Engine chain")
    model: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[\w.:/-]+$")
    prompt_mode: PromptMode | None = None
    dpi: int | None = Field(None, ge=36, le=1200)
    text_layer: Literal["auto", "off", "only"] | None = Field(
        None,
        description="PDF pages' own text: auto (where trusted, else OCR), off (always OCR), only (never OCR)",
    )
    priority: int = Field(5, ge=0, le=9, description="0 lowest, 9 highest: overtakes lower jobs in the queue")
    callback_url: HttpUrl | None = Field(None, description="POSTed to, signed, when the job ends")
    force: bool = Field(False, description="OCR again documents already done with the same settings")


class PathsJobCreate(BaseModel):
    """A job over files the server already has, under its allowed roots."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(min_length=1, max_length=1000)
    options: JobOptions = Field(default_factory=JobOptions)


class JobLinks(BaseModel):
    self: str
    documents: str
    result: str


class JobAccepted(BaseModel):
    id: int
    status: str
    documents: int
    links: JobLinks


# --- reading --------------------------------------------------------------------


class PageCounts(BaseModel):
    total: int
    done: int
    failed: int
    degraded: int = Field(
        0, description="Done pages read by a fallback engine, not the job's primary one (redo them)"
    )


class JobCounts(BaseModel):
    documents: dict[str, int] = Field(description="Documents by status")
    pages: PageCounts
    engines: dict[str, int] | None = Field(None, description="Done pages by engine (job detail only)")


class WebhookAttempt(BaseModel):
    """One delivery as its job's owner sees it: no connection errors (they would map the network)."""

    attempt: int
    started_at: UtcDatetime
    duration_ms: float
    status_code: int | None = Field(description="The receiver's HTTP status; null when unreachable")
    outcome: WebhookOutcome


class WebhookState(BaseModel):
    url: str = Field(description="The callback URL, credentials masked")
    status: str | None = Field(description="pending, sending, delivered or failed")
    deliveries: list[WebhookAttempt] = Field(default_factory=list)


class JobPublic(BaseModel):
    id: int
    status: str
    origin: str
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    counts: JobCounts
    links: JobLinks


class DocumentError(BaseModel):
    document_id: int
    path: str
    status: str
    code: str
    message: str | None


class JobDetail(JobPublic):
    settings: dict[str, Any]
    primary_engine: str | None = Field(description="The engine pages are meant for; others are degraded")
    errors: list[DocumentError] = Field(description="Documents that failed or are partial")
    webhook: WebhookState | None


class RedoAccepted(BaseModel):
    job_id: int
    pages: int = Field(description="Degraded pages sent to the primary engine again")
    primary_engine: str | None
    links: JobLinks


class JobsPage(BaseModel):
    data: list[JobPublic]
    count: int = Field(description="Jobs matching the filter, all pages")
    limit: int
    offset: int


class DocumentLinks(BaseModel):
    self: str
    job: str
    pages: str = Field(description="Template: append the 1-based page number")


class DocumentPublic(BaseModel):
    id: int
    job_id: int
    path: str
    status: str
    type: str | None
    sha256: str | None
    size_bytes: int | None
    pages: int
    pages_done: int
    pages_failed: int
    pages_degraded: int = Field(0, description="Done pages read by a fallback engine")
    error: dict[str, Any] | None
    links: DocumentLinks


class DocumentsPage(BaseModel):
    data: list[DocumentPublic]
    count: int
    limit: int
    offset: int


class AttemptPublic(BaseModel):
    """One engine's try at a page, in the order the chain made them."""

    engine: str
    model: str | None
    started_at: UtcDatetime
    duration_ms: float
    outcome: str
    error_code: str | None


class PageSummary(BaseModel):
    """A page in a document's page list: its fate and how it got there (text: the page resource)."""

    number: int = Field(description="1-based")
    status: str
    engine: str | None
    reused: bool
    error: dict[str, Any] | None
    attempts: list[AttemptPublic]
    self: str


class PagesPage(BaseModel):
    data: list[PageSummary]
    count: int
    limit: int
    offset: int


class PagePublic(BaseModel):
    """One page as in the per-document JSON file, plus where it belongs."""

    document_id: int
    number: int = Field(description="1-based, as in the Markdown's page markers")
    index: int
    status: str
    width: int | None
    height: int | None
    engine: str | None
    model: str | None
    reused: bool
    text: str | None
    markdown: str | None
    cells: list[dict[str, Any]]
    notes: list[dict[str, Any]] = Field(
        default_factory=list,
        description="How the page was read: text layer used or rejected and why, damage (warning), tiles",
    )
    error: dict[str, Any] | None
    timings: dict[str, Any]
    tokens: dict[str, Any]
    attempts: list[AttemptPublic] = Field(default_factory=list, description="Every engine try, in order")


class Health(BaseModel):
    status: Literal["ok", "ready", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
