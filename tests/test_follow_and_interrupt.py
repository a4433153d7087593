"""How a user's command ends: Ctrl-C, an empty input, ``--wait --timeout``, a database blip while following.

Real processes throughout: ``submit-batch`` runs as a child process and gets
a real SIGINT; the follower reaches Postgres through a TCP proxy of the
test's own, cut for a few seconds while a real worker finishes the job.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.migrations import upgrade
from ocrq.db.models import Document, Job, Page
from ocrq.db.session import make_engine, make_session_factory
from tests.factories import make_text_pdf
from tests.queue_harness import CLI, Processes, job_finished, pages_with_status, wait_for
from tests.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.slow

BASE_ENV = {
    "OCRQ_ENGINES": "tesseract",
    "OCRQ_TESSERACT_LANGS": "eng",
    "OCRQ_RENDER_DPI": "100",
    "OCRQ_TEXT_LAYER": "off",  # the typed PDFs stand in for scans: OCR them page by page
}


def _pdf(folder: Path, pages: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return make_text_pdf(folder / "long.pdf", [f"Page {n} of a long letter" for n in range(pages)])


def _sessions(url: str) -> sessionmaker[Session]:
    return make_session_factory(make_engine(url))


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    processes = Processes(env, cwd)
    return subprocess.Popen(
        [*CLI, *args], env=processes.env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _latest_job(sessions: sessionmaker[Session]) -> Job | None:
    with sessions() as session:
        return session.scalars(select(Job).order_by(Job.id.desc())).first()


def test_ctrl_c_closes_the_embedded_job_as_interrupted_and_the_same_command_resumes(tmp_path: Path) -> None:
    folder, database = _pdf(tmp_path / "in", 16).parent, tmp_path / "ocrq.db"
    env = BASE_ENV | {"OCRQ_DATABASE_URL": f"sqlite:///{database}", "OCRQ_PAGE_WORKERS": "1"}
    args = ["submit-batch", str(folder), "--out", str(tmp_path / "out")]
    run = _start(args, env, tmp_path)
    wait_for(database.exists, 60, "the database")
    sessions = _sessions(f"sqlite:///{database}")
    wait_for(
        lambda: (job := _latest_job(sessions)) is not None and _done(sessions, job.id) >= 2, 120, "pages"
    )
    run.send_signal(signal.SIGINT)
    _out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    said = " ".join(err.split())  # rich wraps lines at the terminal width
    assert "interrupted: job" in said and "To resume, run the same command again" in said
    assert "Traceback" not in err and "Aborted" not in err
    job = _latest_job(sessions)
    assert job is not None and (job.status, job.finished_at is not None) == ("interrupted", True)
    done_before = _done(sessions, job.id)
    assert 2 <= done_before < 16
    assert pages_with_status(sessions, job.id, "running") == 0  # nothing left claimed
    again = _start(args, env, tmp_path)
    _out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    resumed = _latest_job(sessions)
    assert resumed is not None and resumed.id != job.id and resumed.status == "done"
    assert _reused(sessions, resumed.id) == done_before


def _done(sessions: sessionmaker[Session], job_id: int) -> int:
    return pages_with_status(sessions, job_id, "done")


def _reused(sessions: sessionmaker[Session], job_id: int) -> int:
    with sessions() as session:
        return session.scalar(
            select(func.count())
            .select_from(Page)
            .join(Document)
            .where(Document.job_id == job_id, Page.reused)
        )


@pytest.mark.parametrize("broker", [None, "redis://127.0.0.1:9/0"])
def test_an_input_without_documents_is_a_usage_error_and_leaves_no_job(
    tmp_path: Path, broker: str | None
) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / ".hidden.pdf").write_bytes(b"%PDF-1.4")
    env = BASE_ENV | {"OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'ocrq.db'}"}
    if broker:
        env["OCRQ_BROKER_URL"] = broker
    run = _start(["submit-batch", str(empty), "--wait"], env, tmp_path)
    _out, err = run.communicate(timeout=60)
    assert run.returncode == 2, err
    assert "no documents found" in " ".join(err.split())
    if (tmp_path / "ocrq.db").exists():
        assert _latest_job(_sessions(f"sqlite:///{tmp_path / 'ocrq.db'}")) is None


@pytest.fixture
def queue_env(postgres_url: str, redis_url: str) -> dict[str, str]:
    upgrade(postgres_url)
    return BASE_ENV | {
        "OCRQ_DATABASE_URL": postgres_url,
        "OCRQ_BROKER_URL": redis_url,
        "OCRQ_RECONCILE_GRACE": "2",
    }


def test_wait_with_a_timeout_says_still_running_and_exits_4(
    tmp_path: Path, queue_env: dict[str, str]
) -> None:
    folder = _pdf(tmp_path / "in", 2).parent
    started = time.monotonic()
    run = _start(["submit-batch", str(folder), "--wait", "--timeout", "3"], queue_env, tmp_path)  # no worker
    out, err = run.communicate(timeout=60)
    assert run.returncode == 4, err
    assert 3 <= time.monotonic() - started < 30
    job_id = int(out.split()[0])
    said = " ".join(err.split())
    assert f"job {job_id} still running" in said and f"ocrq status {job_id}" in said
    assert "Traceback" not in err
    assert not job_finished(_sessions(queue_env["OCRQ_DATABASE_URL"]), job_id)


def test_wait_says_when_no_worker_consumes_the_job_queue(tmp_path: Path, queue_env: dict[str, str]) -> None:
    folder = _pdf(tmp_path / "in", 1).parent
    run = _start(["submit-batch", str(folder), "--wait", "--timeout", "15"], queue_env, tmp_path)  # no worker
    _out, err = run.communicate(timeout=90)
    said = " ".join(err.split())
    assert run.returncode == 4, err
    assert "no worker consumes the queue(s)" in said and "ocrq worker --role all" in said
    assert said.count("no worker consumes") == 1


def test_wait_rides_out_a_database_blip_while_the_workers_finish_the_job(
    tmp_path: Path, queue_env: dict[str, str]
) -> None:
    folder = _pdf(tmp_path / "in", 10).parent
    direct = queue_env["OCRQ_DATABASE_URL"]
    sessions = _sessions(direct)
    logs = tmp_path / "logs"
    logs.mkdir()
    workers = Processes(queue_env, logs)
    try:
        workers.worker("w1", "--concurrency", "1")
        with tcp_proxy(("127.0.0.1", 5432)) as proxy:
            proxied = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
            args = ["submit-batch", str(folder), "--wait", "--timeout", "240", "--out", str(tmp_path / "out")]
            run = _start(args, queue_env | {"OCRQ_DATABASE_URL": proxied}, tmp_path)
            wait_for(
                lambda: (job := _latest_job(sessions)) is not None and _done(sessions, job.id) >= 1,
                120,
                "1st page",
            )
            proxy.cut()
            time.sleep(5)
            proxy.restore()
            _out, err = run.communicate(timeout=240)
    finally:
        workers.stop_all()
    assert run.returncode == 0, err
    said = " ".join(err.split())
    assert "database unreachable" in said and "reachable again" in said
    assert "Traceback" not in err
    job = _latest_job(sessions)
    assert job is not None and job.status == "done"
    assert (tmp_path / "out" / "long.pdf.md").exists()
