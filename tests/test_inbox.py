"""Nightly inbox ingestion: stable files only, content deduplicated, sources moved when finished."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ocrq.api.cli import cli
from ocrq.db.models import Document, Job
from ocrq.db.session import make_engine, make_session_factory
from ocrq.errors import ConfigurationError
from ocrq.settings import Settings
from ocrq.worker.documents.inbox import stable_sources
from ocrq.worker.queue.beat_lock import BeatLock
from tests.factories import make_text_image

OLD = time.time() - 3600


def _inbox(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    (inbox / "batch").mkdir(parents=True)
    make_text_image("Delivery note twelve").save(inbox / "note.png")
    make_text_image("Delivery note twelve").save(inbox / "batch" / "same-note.png")  # same bytes
    (inbox / "broken.pdf").write_bytes(b"%PDF-1.7\nnot really\n")
    for path in inbox.rglob("*.*"):
        os.utime(path, (OLD, OLD))
    return inbox


def _ingest(settings: Settings, tmp_path: Path) -> str:
    env = {
        "OCRQ_DATABASE_URL": settings.database_url,
        "OCRQ_ENGINES": "tesseract",
        "OCRQ_INBOX_DIR": str(tmp_path / "inbox"),
        "OCRQ_INBOX_STABLE_SECONDS": "60",
    }
    result = CliRunner().invoke(cli, ["ingest", "--now", "--out", str(tmp_path / "out")], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_a_file_still_being_written_waits(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    make_text_image("Still arriving").save(inbox / "growing.png")  # modified just now
    names = {source.relpath for source in stable_sources(inbox, stable_seconds=60)}
    assert names == {"note.png", "batch/same-note.png", "broken.pdf"}


def test_ingest_once_dedups_content_and_moves_finished_sources(
    tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = make_settings()
    inbox = _inbox(tmp_path)
    job_id = _ingest(settings, tmp_path)
    assert job_id.isdigit()
    sessions = make_session_factory(make_engine(settings.database_url))
    with sessions() as session:
        job = session.get_one(Job, int(job_id))
        assert job.origin == "inbox"
        outcomes = {Path(d.path).name: d.status for d in job.documents}
    assert outcomes in (
        {"note.png": "done", "broken.pdf": "failed"},
        {"same-note.png": "done", "broken.pdf": "failed"},
    )
    assert not (inbox / "broken.pdf").exists() and (inbox / "failed" / "broken.pdf").exists()
    assert len(list((inbox / "done").rglob("*.png"))) == 1
    assert _ingest(settings, tmp_path) == "nothing new in the inbox"
    make_text_image("Delivery note twelve").save(inbox / "again.png")  # known content, new name
    os.utime(inbox / "again.png", (OLD, OLD))
    assert _ingest(settings, tmp_path) == "nothing new in the inbox"
    with sessions() as session:
        assert len(session.scalars(select(Document)).all()) == 2


def test_only_one_beat_may_run(redis_url: str) -> None:
    first, second = BeatLock(redis_url, ttl_s=5), BeatLock(redis_url, ttl_s=5)
    first.acquire()
    try:
        with pytest.raises(ConfigurationError, match="another beat is running"):
            second.acquire()
    finally:
        first.release()
    second.acquire()  # free again once the first one stops
    second.release()
