"""The Celery path with real Redis, real Postgres and real worker processes.

Workers are started as child processes through ``ocrq worker``; tests drive
them through the database and the broker, then count rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.cli import cli
from ocrq.db.migrations import upgrade
from ocrq.db.models import Attempt, Document, Job, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import Settings, build_settings
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.dispatch import Dispatcher
from ocrq.worker.queue.reconcile import run_reconcile
from tests.factories import make_encrypted_pdf, make_text_image, make_text_pdf
from tests.queue_harness import Processes, job_finished, pages_with_status, wait_for

pytestmark = pytest.mark.slow

QUEUE_ENV = {
    "OCRQ_ENGINES": "tesseract",
    "OCRQ_TEXT_LAYER": "off",  # the typed PDFs stand in for scans: workers must take their time on each
    "OCRQ_PAGE_TIME_LIMIT": "8",
    "OCRQ_VISIBILITY_TIMEOUT": "12",
    "OCRQ_RECONCILE_GRACE": "2",
    "OCRQ_RECONCILE_INTERVAL": "5",
    "OCRQ_TESSERACT_LANGS": "eng",
}


@dataclass
class Queue:
    env: dict[str, str]
    settings: Settings
    sessions: sessionmaker[Session]
    processes: Processes

    def submit(self, folder: Path) -> int:
        dispatcher = Dispatcher(create_app(self.settings), self.sessions, self.settings)
        return dispatcher.submit(walk_sources([folder]))

    def reconcile(self) -> dict[str, int]:
        return run_reconcile(
            self.sessions, self.settings, Dispatcher(create_app(self.settings), self.sessions, self.settings)
        )


@pytest.fixture
def queue(
    tmp_path: Path, postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Queue]:
    monkeypatch.chdir(tmp_path)
    upgrade(postgres_url)
    env = QUEUE_ENV | {"OCRQ_DATABASE_URL": postgres_url, "OCRQ_BROKER_URL": redis_url}
    settings = build_settings(**{key.removeprefix("OCRQ_").lower(): value for key, value in env.items()})
    engine = make_engine(postgres_url)
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Processes(env, logs)
    try:
        yield Queue(env, settings, make_session_factory(engine), processes)
    finally:
        processes.stop_all()
        engine.dispose()


def _pages_pdf(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return make_text_pdf(folder / "long.pdf", [f"Page number {n} of the queue test" for n in range(count)])


def test_a_batch_through_the_queue_matches_the_embedded_run(queue: Queue, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    make_text_pdf(folder / "letters.pdf", ["Invoice seven for the archive", "Second page of letters"])
    make_text_image("Scanned receipt number nine").save(folder / "sub" / "scan.png")
    make_encrypted_pdf(folder / "locked.pdf")
    (folder / "zero.pdf").write_bytes(b"")
    queue.processes.worker("w1")
    queued = CliRunner().invoke(
        cli, ["submit-batch", str(folder), "--out", str(tmp_path / "q"), "--wait"], env=queue.env
    )
    embedded_env = {
        "OCRQ_BROKER_URL": None,
        "OCRQ_ENGINES": "tesseract",
        "OCRQ_TEXT_LAYER": "off",
        "OCRQ_TESSERACT_LANGS": "eng",
        "OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}",
    }
    embedded = CliRunner().invoke(
        cli, ["submit-batch", str(folder), "--out", str(tmp_path / "e")], env=embedded_env
    )
    assert (queued.exit_code, embedded.exit_code) == (3, 3), queued.output
    assert queued.stdout.strip().splitlines()[0].isdigit()  # the job id, for scripts
    assert _outcomes(tmp_path / "q") == _outcomes(tmp_path / "e")
    for name in ("letters.pdf.md", "sub/scan.png.md"):
        assert (tmp_path / "q" / name).read_text() == (tmp_path / "e" / name).read_text()
    assert "invoice" in (tmp_path / "q" / "letters.pdf.md").read_text().lower()


def _outcomes(out: Path) -> dict[str, tuple]:
    documents = json.loads((out / "batch.json").read_text())["documents"]
    return {d["path"]: (d["status"], d["pages"], (d["error"] or {}).get("code")) for d in documents}


def test_a_killed_worker_loses_no_page_and_repeats_none(queue: Queue, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _pages_pdf(folder, 14)
    first = queue.processes.worker("w1")
    job_id = queue.submit(folder)
    wait_for(lambda: pages_with_status(queue.sessions, job_id, "done") >= 2, 90, "first pages")
    queue.processes.kill(first)
    queue.processes.worker("w2")
    wait_for(
        lambda: bool(queue.reconcile()) and job_finished(queue.sessions, job_id), 150, "the job", every=2
    )
    _assert_every_page_done_once(queue.sessions, job_id, 14)


def test_a_flushed_broker_is_refilled_from_the_database(queue: Queue, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _pages_pdf(folder, 12)
    queue.processes.worker("w1", "--concurrency", "1")
    queue.processes.start("beat", name="beat")
    job_id = queue.submit(folder)
    wait_for(lambda: pages_with_status(queue.sessions, job_id, "done") >= 1, 90, "first page")
    redis.Redis.from_url(queue.settings.broker_url).flushdb()
    wait_for(lambda: job_finished(queue.sessions, job_id), 150, "the beat's reconciler to finish the job")
    _assert_every_page_done_once(queue.sessions, job_id, 12)


def test_cancel_skips_queued_pages_and_lets_running_ones_finish(queue: Queue, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _pages_pdf(folder, 30)
    queue.processes.worker("w1", "--concurrency", "1")
    job_id = queue.submit(folder)
    wait_for(lambda: pages_with_status(queue.sessions, job_id, "done") >= 1, 90, "first page")
    result = CliRunner().invoke(cli, ["cancel", str(job_id)], env=queue.env)
    assert result.exit_code == 0, result.output
    wait_for(lambda: pages_with_status(queue.sessions, job_id, "running") == 0, 30, "running pages to finish")
    done, cancelled = (pages_with_status(queue.sessions, job_id, s) for s in ("done", "cancelled"))
    assert done + cancelled == 30 and cancelled > 0
    with queue.sessions() as session:
        assert session.get_one(Job, job_id).status == "cancelled"
    status = CliRunner().invoke(cli, ["status", str(job_id), "--json"], env=queue.env)
    assert json.loads(status.stdout)["status"] == "cancelled"
    assert CliRunner().invoke(cli, ["cancel", str(job_id)], env=queue.env).exit_code == 2


def _assert_every_page_done_once(sessions: sessionmaker[Session], job_id: int, pages: int) -> None:
    with sessions() as session:
        job = session.get_one(Job, job_id)
        (document,) = job.documents
        assert (job.status, document.status) == ("done", "done")
        assert (document.page_count, document.pages_done, document.pages_failed) == (pages, pages, 0)
        rows = session.scalar(select(func.count()).select_from(Page).where(Page.document_id == document.id))
        done = session.scalar(
            select(func.count())
            .select_from(Page)
            .where(Page.document_id == document.id, Page.status == "done")
        )
        assert rows == done == pages
        ok = session.scalar(
            select(func.count())
            .select_from(Attempt)
            .join(Page)
            .join(Document)
            .where(Document.job_id == job_id, Attempt.outcome == "ok")
        )
        assert ok >= pages


def test_pages_whose_engines_are_down_come_back_later(queue: Queue, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _pages_pdf(folder, 3)
    queue.processes.env |= {
        "OCRQ_CHAIN_FACTORY": "tests.engine_doubles:flaky_chain",
        "OCRQ_TEST_FLAKY_FAILURES": "4",
        "OCRQ_PAGE_RETRY_BACKOFF_SECONDS": "0.5",
    }
    queue.processes.worker("w1")
    job_id = queue.submit(folder)
    wait_for(lambda: job_finished(queue.sessions, job_id), 60, "the retried pages")
    _assert_every_page_done_once(queue.sessions, job_id, 3)
    with queue.sessions() as session:
        outcomes = session.execute(select(Attempt.outcome, func.count()).group_by(Attempt.outcome)).all()
    assert dict(outcomes) == {"error": 4, "ok": 3}


def test_each_job_is_done_with_its_own_settings_and_priority(queue: Queue, tmp_path: Path) -> None:
    """Two jobs queued before any worker runs: the urgent one (priority 9, 150 DPI) overtakes the
    earlier one (priority 0, the host's 200 DPI), and each page is rendered at its job's DPI."""
    slow, urgent = _pages_pdf(tmp_path / "slow", 8), _pages_pdf(tmp_path / "urgent", 2)
    app = create_app(queue.settings)
    low = Dispatcher(app, queue.sessions, queue.settings).submit(walk_sources([slow]), priority=0)
    sharp = queue.settings.model_copy(update={"render_dpi": 150})
    high = Dispatcher(app, queue.sessions, sharp).submit(walk_sources([urgent]), priority=9)
    queue.processes.worker("w1", "--concurrency", "1")
    wait_for(
        lambda: job_finished(queue.sessions, low) and job_finished(queue.sessions, high), 120, "both jobs"
    )
    with queue.sessions() as session:
        low_job, high_job = session.get_one(Job, low), session.get_one(Job, high)
        assert high_job.finished_at < low_job.finished_at
        widths = {
            job.id: {page.width for doc in job.documents for page in doc.pages} for job in (low_job, high_job)
        }
    assert widths == {low: {1654}, high: {1241}}  # A4 (595.3 pt) at 200 and at 150 DPI, rounded up


def test_a_job_submitted_while_redis_is_down_is_queued_when_it_is_back(queue: Queue, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _pages_pdf(folder, 2)
    down = queue.settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    job_id = Dispatcher(create_app(down), queue.sessions, down).submit(walk_sources([folder]))
    with queue.sessions() as session:
        assert session.get_one(Job, job_id).status == "queued"  # registered, durable, not lost
    queue.processes.worker("w1")
    wait_for(lambda: bool(queue.reconcile()) and job_finished(queue.sessions, job_id), 60, "the job", every=1)
    _assert_every_page_done_once(queue.sessions, job_id, 2)


def test_flower_shows_the_workers_and_their_tasks_behind_basic_auth(queue: Queue, tmp_path: Path) -> None:
    import httpx

    from tests.vllm_server import free_port

    port = free_port()
    queue.processes.env |= {"OCRQ_FLOWER_BASIC_AUTH": "ops:correct-horse-battery"}
    flower = queue.processes.start("flower", "--port", str(port), name="flower")
    queue.processes.worker("w1")
    folder = tmp_path / "in"
    _pages_pdf(folder, 2)
    job_id = queue.submit(folder)
    wait_for(lambda: job_finished(queue.sessions, job_id), 60, "the job")
    url, auth = f"http://127.0.0.1:{port}", ("ops", "correct-horse-battery")
    wait_for(lambda: _flower_sees(url, auth, "ocrq.ocr_page"), 60, "Flower to see the page tasks", every=1)
    assert _listening_on(flower.pid, port) == {"127.0.0.1"}  # not 0.0.0.0 or [::] unless --address says so
    assert httpx.get(f"{url}/api/workers", timeout=10).status_code == 401  # no auth, no API
    tasks = httpx.get(f"{url}/api/tasks", auth=auth, timeout=10).json().values()
    assert {task["worker"].split("@")[0] for task in tasks if task.get("worker")} == {"all"}
    assert any(
        name.startswith("all@")
        for name in httpx.get(f"{url}/api/workers?refresh=1", auth=auth, timeout=30).json()
    )


def _listening_on(pid: int, port: int) -> set[str]:
    import psutil

    return {
        connection.laddr.ip
        for connection in psutil.Process(pid).net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    }


def _flower_sees(url: str, auth: tuple[str, str], task_name: str) -> bool:
    import httpx

    try:
        tasks = httpx.get(f"{url}/api/tasks", auth=auth, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    return sum(task.get("name") == task_name for task in tasks.values()) >= 2
