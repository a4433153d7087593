"""``ocrq ingest --now``: one inbox ingestion, queued (with a broker) or run right here (without)."""

from __future__ import annotations

from pathlib import Path

from ocrq.settings import Settings
from ocrq.worker.batch import BatchRequest, open_database, run_embedded_sources
from ocrq.worker.documents.inbox import ingest_inbox, move_finished_sources
from ocrq.worker.documents.sources import SourceFile


def ingest_inbox_now(settings: Settings, out_dir: Path) -> int | None:
    engine, sessions = open_database(settings)
    try:
        if settings.embedded:
            job_id = ingest_inbox(
                sessions, settings, lambda sources, origin: _run_here(settings, sources, out_dir)
            )
            move_finished_sources(sessions, settings)
            return job_id
        from ocrq.worker.queue.celery_app import create_app
        from ocrq.worker.queue.dispatch import Dispatcher

        return ingest_inbox(sessions, settings, Dispatcher(create_app(settings), sessions, settings).submit)
    finally:
        engine.dispose()


def _run_here(settings: Settings, sources: list[SourceFile], out_dir: Path) -> int:
    batch = run_embedded_sources(settings, sources, BatchRequest([], out_dir), origin="inbox")
    return batch["job_id"]
