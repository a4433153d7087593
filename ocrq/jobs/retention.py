"""Uploaded sources are kept for a while after their job ends, then deleted: results stay in the database.

Without this the API's upload folder only grows. Only files under the upload
folder are touched (a job over server-side ``paths`` keeps its sources), and
each job is handled once (``sources_removed_at``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Job, utcnow
from ocrq.settings import Settings

log = logging.getLogger(__name__)
JOBS_PER_ROUND = 200


def remove_expired_uploads(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Delete the uploads of jobs finished longer ago than the retention; returns how many files went."""
    if settings.api_upload_retention_hours <= 0:
        return 0
    cutoff = utcnow() - timedelta(hours=settings.api_upload_retention_hours)
    root = settings.api_upload_dir.resolve()
    removed = 0
    with sessions.begin() as session:
        for job in _expired_jobs(session, cutoff):
            removed += sum(_remove(Path(document.path), root) for document in job.documents)
            job.sources_removed_at = utcnow()
    if removed:
        log.info("removed %d uploaded source file(s) past their retention", removed)
    return removed


def _expired_jobs(session: Session, cutoff: datetime) -> list[Job]:
    return list(
        session.scalars(
            select(Job)
            .where(Job.finished_at < cutoff, Job.sources_removed_at.is_(None))
            .limit(JOBS_PER_ROUND)
        )
    )


def _remove(path: Path, root: Path) -> bool:
    if not path.is_relative_to(root) or not path.is_file():
        return False
    path.unlink()
    folder = path.parent
    while folder != root and folder.is_relative_to(root) and not any(folder.iterdir()):
        folder.rmdir()  # the submission's own folder, once empty
        folder = folder.parent
    return True
