"""Job → documents → pages → attempts: the durable truth about every job.

The Celery result backend is short-lived; these tables are what status, resume,
retries and the API read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ocrq.db.fs_text import FsPathText, ShownText

JsonColumn = JSON().with_variant(JSONB(), "postgresql")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result_key: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict[str, Any]] = mapped_column(JsonColumn, default=dict)
    origin: Mapped[str] = mapped_column(String(16), default="cli", server_default="cli")
    """Who submitted it: ``cli``, ``api`` or ``inbox`` (inbox sources are moved when done)."""
    queue: Mapped[str | None] = mapped_column(String(64))
    """The page queue its pages go to; None for embedded (in-process) jobs."""
    primary_engine: Mapped[str | None] = mapped_column(String(32))
    """The engine its pages are meant for (first of the chain that ran it); a page read by any
    other engine is *degraded*, counted as such, and ``ocrq redo --degraded`` reads it again."""
    # REST API: who submitted it, and the completion webhook's state.
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), index=True)
    """The key that made it; None for CLI and inbox jobs (visible to admin keys only)."""
    declared_pages: Mapped[int | None] = mapped_column(Integer)
    """Pages the files' headers declared at API submission: the key's quota counts them until done."""
    callback_url: Mapped[str | None] = mapped_column(Text)
    webhook_status: Mapped[str | None] = mapped_column(String(16))
    """``pending``, ``sending``, ``delivered`` or ``failed``; None without a callback URL."""
    webhook_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    """When the next attempt may start; while ``sending``, when the sender's claim lapses."""
    sources_removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When its uploaded sources were deleted after the retention period (results stay)."""

    documents: Mapped[list[Document]] = relationship(
        back_populates="job", order_by="Document.id", cascade="all, delete-orphan"
    )
    webhook_deliveries: Mapped[list[WebhookDelivery]] = relationship(
        back_populates="job", order_by="WebhookDelivery.id", cascade="all, delete-orphan"
    )


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (Index("ix_documents_sha256_result_key", "sha256", "result_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(FsPathText)
    """Absolute source path, as the workers must open it (a non-UTF-8 name round-trips exactly)."""
    relpath: Mapped[str] = mapped_column(ShownText)
    """Relative to the input root: where its outputs go under ``--out`` (undecodable bytes as ``\\xff``)."""
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    detected_type: Mapped[str | None] = mapped_column(String(16))
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    pages_done: Mapped[int] = mapped_column(Integer, default=0)
    pages_failed: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(ShownText)
    result_key: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    job: Mapped[Job] = relationship(back_populates="documents")
    pages: Mapped[list[Page]] = relationship(
        back_populates="document", order_by="Page.index", cascade="all, delete-orphan"
    )


class Page(Base):
    __tablename__ = "pages"
    __table_args__ = (
        UniqueConstraint("document_id", "index"),
        Index("ix_pages_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    text: Mapped[str | None] = mapped_column(Text)
    markdown: Mapped[str | None] = mapped_column(Text)
    cells: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonColumn)
    engine: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Last time a task for this page was sent to the broker (the reconciler compares it)."""
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """A running page's claim lasts until then; the claiming worker's heartbeat keeps moving it."""
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    render_ms: Mapped[float | None] = mapped_column(Float)
    ocr_ms: Mapped[float | None] = mapped_column(Float)
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(ShownText)
    reused: Mapped[bool] = mapped_column(Boolean, default=False)
    """True when the result was carried over from an earlier run of the same content."""
    notes: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonColumn)
    """How the page was read (text layer trusted or why not, damage MuPDF reported, tiles);
    a note with ``warning`` true means content may be missing and makes its document partial."""

    document: Mapped[Document] = relationship(back_populates="pages")
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="page", order_by="Attempt.id", cascade="all, delete-orphan"
    )


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"), index=True)
    engine: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(ShownText)

    page: Mapped[Page] = relationship(back_populates="attempts")


# --- REST API -------------------------------------------------------------------


class ApiKey(Base):
    """An API key, stored as its SHA-256: the key itself is shown once, when made."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    """The key's first characters, so an operator can tell keys apart in ``ocrq keys list``."""
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="submit", server_default="submit")
    """``submit`` sees only its own jobs; ``admin`` sees every job (:mod:`ocrq.jobs.access`)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One attempt to POST a job's completion to its callback URL."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    status_code: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    """``delivered`` (2xx) or ``failed``."""
    error: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="webhook_deliveries")
