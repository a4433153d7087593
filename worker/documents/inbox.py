"""Nightly ingestion of an inbox folder, and tidying its sources once their documents finish.

A file still being written (modified within the stability delay) waits for
the next run; a file whose content (SHA-256) ocrq already knows is skipped.
Finished sources move to ``done/`` or ``failed/`` under the inbox.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.fs_text import stored_prefixes
from ocrq.db.models import Document, Job
from ocrq.schemas import DocumentStatus
from ocrq.settings import Settings
from ocrq.worker.documents.sources import SourceFile, sha256_of, walk_sources

log = logging.getLogger(__name__)

DONE_DIR, FAILED_DIR = "done", "failed"
Submit = Callable[[list[SourceFile], str], int]


def stable_sources(inbox: Path, stable_seconds: float, now: float | None = None) -> list[SourceFile]:
    """Files under the inbox (not in done/ or failed/) untouched for at least ``stable_seconds``."""
    now = time.time() if now is None else now
    sources = walk_sources([inbox], exclude=[inbox / DONE_DIR, inbox / FAILED_DIR])
    return [s for s in sources if now - s.path.lstat().st_mtime >= stable_seconds]


def new_sources(sessions: sessionmaker[Session], sources: list[SourceFile]) -> list[SourceFile]:
    """Hash each file and drop those whose content is already queued or processed.

    An entry that cannot be hashed (a dangling link, a FIFO, an unreadable
    file) goes on unhashed: its ingest fails it with a code, and it moves to
    ``failed/`` like any failed source instead of blocking the inbox.
    """
    hashed = [SourceFile(s.path, s.relpath, _sha256_or_none(s.path)) for s in sources]
    with sessions() as session:
        known = set(
            session.scalars(select(Document.sha256).where(Document.sha256.in_([s.sha256 for s in hashed])))
        )
    fresh: dict[str, SourceFile] = {}
    for source in hashed:
        if source.sha256 is None or source.sha256 not in known:
            fresh.setdefault(source.sha256 or str(source.path), source)  # the same file twice in a run: once
    return list(fresh.values())


def _sha256_or_none(path: Path) -> str | None:
    """Only regular files are opened: reading a FIFO would block the inbox run."""
    try:
        return sha256_of(path) if path.is_file() else None
    except OSError:
        return None


def ingest_inbox(sessions: sessionmaker[Session], settings: Settings, submit: Submit) -> int | None:
    """Submit the inbox's new, stable files as one job; returns its id (None: nothing to do)."""
    if settings.inbox_dir is None or not settings.inbox_dir.is_dir():
        log.warning("inbox %s is not a folder; nothing ingested", settings.inbox_dir)
        return None
    sources = new_sources(sessions, stable_sources(settings.inbox_dir, settings.inbox_stable_seconds))
    if not sources:
        return None
    job_id = submit(sources, "inbox")
    log.info("inbox: job %s with %d new document(s)", job_id, len(sources))
    return job_id


def move_finished_sources(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Move sources of finished inbox documents still lying in the inbox; returns how many moved."""
    if not settings.inbox_move or settings.inbox_dir is None:
        return 0
    inbox = settings.inbox_dir.resolve()
    moved = 0
    with sessions.begin() as session:
        for document in _finished_inbox_documents(session, inbox):
            moved += _move_source(document, inbox)
    return moved


def _finished_inbox_documents(session: Session, inbox: Path) -> list[Document]:
    """Only those whose source still lies in the inbox proper, so the query stays small."""
    finished = (DocumentStatus.DONE, DocumentStatus.PARTIAL, DocumentStatus.FAILED)
    return list(
        session.scalars(
            select(Document)
            .join(Job)
            .where(
                Job.origin == "inbox",
                Document.status.in_(finished),
                or_(*(Document.path.startswith(p) for p in stored_prefixes(f"{inbox}/"))),
                ~Document.path.startswith(f"{inbox / DONE_DIR}/"),
                ~Document.path.startswith(f"{inbox / FAILED_DIR}/"),
            )
        )
    )


def _move_source(document: Document, inbox: Path) -> bool:
    source = Path(document.path)
    if not source.is_relative_to(inbox) or source.relative_to(inbox).parts[0] in (DONE_DIR, FAILED_DIR):
        return False
    folder = DONE_DIR if document.status == DocumentStatus.DONE else FAILED_DIR
    target = inbox / folder / source.relative_to(inbox)
    if not os.path.lexists(source):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, target)
    document.path = str(target)
    return True
