"""The queue under faults, with real workers and beat: nothing waits for a manual reconcile or 900 s.

Each test has its own redis-server (so Redis can be down or restarted) and its
own Postgres database. ``OCRQ_PAGE_TIME_LIMIT`` stays at its 900 s default:
recovery must come from the page lease and the beat's reconciler.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.migrations import upgrade
from ocrq.db.models import Attempt, Document, Job, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import Settings, build_settings
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.dispatch import Dispatcher
from tests.factories import make_text_pdf
from tests.queue_harness import Processes, job_finished, pages_with_status, wait_for
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

REDIS_PORT = 22002
ENV = {
    "OCRQ_ENGINES": "tesseract",
    "OCRQ_TEXT_LAYER": "off",  # the typed PDFs stand in for scans: pages take an OCR's time in hand
    "OCRQ_TESSERACT_LANGS": "eng",
    "OCRQ_RENDER_DPI": "100",
    "OCRQ_PAGE_LEASE_SECONDS": "6",
    "OCRQ_RECONCILE_GRACE": "3",
    "OCRQ_RECONCILE_INTERVAL": "5",
}


@dataclass
class Cluster:
    env: dict[str, str]
    settings: Settings
    sessions: sessionmaker[Session]
    processes: Processes
    redis: RedisServer

    def submit(self, folder: Path) -> int:
        return Dispatcher(create_app(self.settings), self.sessions, self.settings).submit(
            walk_sources([folder])
        )


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.chdir(tmp_path)
    upgrade(postgres_url)
    server = RedisServer(REDIS_PORT, tmp_path)
    env = ENV | {"OCRQ_DATABASE_URL": postgres_url, "OCRQ_BROKER_URL": server.url}
    settings = build_settings(**{key.removeprefix("OCRQ_").lower(): value for key, value in env.items()})
    engine = make_engine(postgres_url)
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Processes(env, logs)
    try:
        yield Cluster(env, settings, make_session_factory(engine), processes, server)
    finally:
        processes.stop_all()
        server.kill()
        engine.dispose()


def test_documents_submitted_while_redis_is_down_all_finish_without_a_manual_reconcile(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The reconciler's own unacked message in the CPU queue once hid the last lost document."""
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(5):
        make_text_pdf(folder / f"doc{n}.pdf", [f"Document {n} page one", f"Document {n} page two"])
    job_id = cluster.submit(folder)  # Redis is not running yet
    with cluster.sessions() as session:
        assert session.get_one(Job, job_id).status == "queued"
    cluster.redis.start()
    cluster.processes.worker("w1", "--concurrency", "2")
    cluster.processes.start("beat", name="beat")
    wait_for(lambda: job_finished(cluster.sessions, job_id), 120, "every document, by the beat's reconciler")
    _assert_pages_done_once(cluster.sessions, job_id, 10)


def test_a_killed_workers_pages_come_back_within_a_lease_not_the_page_time_limit(
    cluster: Cluster, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_text_pdf(folder / "long.pdf", [f"Page number {n} of the lease test" for n in range(16)])
    cluster.redis.start()
    first = cluster.processes.worker("w1", "--concurrency", "3")
    cluster.processes.start("beat", name="beat")
    job_id = cluster.submit(folder)
    wait_for(lambda: pages_with_status(cluster.sessions, job_id, "done") >= 2, 120, "first pages")
    wait_for(lambda: pages_with_status(cluster.sessions, job_id, "running") >= 1, 30, "a page in hand")
    cluster.processes.kill(first)
    stranded = pages_with_status(cluster.sessions, job_id, "running")
    killed_at = time.monotonic()
    cluster.processes.worker("w2", "--concurrency", "3")
    wait_for(lambda: job_finished(cluster.sessions, job_id), 120, "the job after the kill")
    recovered_in = time.monotonic() - killed_at
    print(f"{stranded} page(s) stranded by SIGKILL; job finished {recovered_in:.0f} s after the kill")
    assert stranded >= 1
    assert recovered_in < 90  # lease 6 s + reconcile 5 s + the remaining pages; never the 900 s limit
    _assert_pages_done_once(cluster.sessions, job_id, 16)


def _assert_pages_done_once(sessions: sessionmaker[Session], job_id: int, pages: int) -> None:
    with sessions() as session:
        assert session.get_one(Job, job_id).status == "done"
        rows = session.execute(
            select(Page.status, func.count())
            .join(Document)
            .where(Document.job_id == job_id)
            .group_by(Page.status)
        ).all()
        assert dict(rows) == {"done": pages}
        counted = session.execute(
            select(func.sum(Document.pages_done), func.sum(Document.page_count)).where(
                Document.job_id == job_id
            )
        ).one()
        assert tuple(counted) == (pages, pages)
        ok_pages = session.scalar(
            select(func.count(func.distinct(Attempt.page_id)))
            .join(Page)
            .join(Document)
            .where(Document.job_id == job_id, Attempt.outcome == "ok")
        )
        assert ok_pages == pages
