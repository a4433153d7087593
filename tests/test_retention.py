"""Uploaded sources go after the retention period; results, and sources the API did not upload, stay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from ocrq.db.models import Job, utcnow
from ocrq.jobs.retention import remove_expired_uploads
from ocrq.settings import Settings
from ocrq.worker.batch import BatchRequest, open_database, run_embedded_sources
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.results.files import write_job_outputs
from tests.factories import make_text_image


def test_uploads_of_old_jobs_are_removed_once_and_results_stay(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    uploads, kept = tmp_path / "uploads", tmp_path / "server-side"
    settings = make_settings(api_upload_dir=uploads, api_upload_retention_hours=24)
    for folder in (uploads / "a1b2", kept):
        folder.mkdir(parents=True)
        make_text_image("Receipt seven").save(folder / "scan.png")
    old = run_embedded_sources(
        settings, walk_sources([uploads / "a1b2", kept]), BatchRequest([], tmp_path / "o")
    )
    recent = run_embedded_sources(settings, walk_sources([kept]), BatchRequest([], tmp_path / "r"))
    _, sessions = open_database(settings)
    with sessions.begin() as session:
        session.execute(
            update(Job).where(Job.id == old["job_id"]).values(finished_at=utcnow() - timedelta(days=2))
        )
    assert remove_expired_uploads(sessions, settings) == 1
    assert not (uploads / "a1b2").exists() and uploads.exists()  # the job's folder went with its file
    assert (kept / "scan.png").exists()  # not an upload: never touched
    assert remove_expired_uploads(sessions, settings) == 0
    with sessions() as session:
        assert session.get_one(Job, old["job_id"]).sources_removed_at is not None
        assert session.get_one(Job, recent["job_id"]).sources_removed_at is None  # within retention
    batch = write_job_outputs(sessions, old["job_id"], tmp_path / "again", settings)
    assert "receipt" in (tmp_path / "again" / "a1b2" / "scan.png.md").read_text().lower()
    assert batch["counts"]["documents"] == {"done": 2}


def test_retention_zero_keeps_everything(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    uploads = tmp_path / "uploads"
    (uploads / "c3d4").mkdir(parents=True)
    make_text_image("Receipt eight").save(uploads / "c3d4" / "scan.png")
    settings = make_settings(api_upload_dir=uploads, api_upload_retention_hours=0)
    done = run_embedded_sources(settings, walk_sources([uploads / "c3d4"]), BatchRequest([], tmp_path / "o"))
    _, sessions = open_database(settings)
    with sessions.begin() as session:
        session.execute(
            update(Job).where(Job.id == done["job_id"]).values(finished_at=utcnow() - timedelta(days=400))
        )
    assert remove_expired_uploads(sessions, settings) == 0
    assert (uploads / "c3d4" / "scan.png").exists()
