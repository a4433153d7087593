"""The chaos driver shared by the soak test and ``bench/chaos.py``: real workers, beat, Redis, Postgres.

Several jobs of many small documents run on real ``ocrq worker`` and ``ocrq
beat`` processes against a private redis-server, Postgres through a TCP proxy
of our own, and the loopback engine stand-in. While the pages run, a seeded
timeline SIGKILLs workers (and restarts them), restarts Redis empty, cuts the
database, stops the engine for a while and adds a job holding a poison page.
The run's outcome is read from the database afterwards (:mod:`tests.chaos_report`).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.migrations import upgrade
from ocrq.db.models import Document, Job, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import build_settings
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.dispatch import Dispatcher
from tests.chaos_engine import SERVED_NAME, ChaosEngine
from tests.factories import make_text_pdf
from tests.queue_harness import Processes
from tests.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy

SMALL_PAGE = (298.0, 420.0)  # A6: quick to render and to read
POISON_PAGE = (840.0, 120.0)  # a strip: the stand-in crashes on it


@dataclass
class ChaosPlan:
    seed: int
    jobs: int = 3
    documents_per_job: int = 10
    pages_per_document: int = 10
    workers: int = 2
    concurrency: int = 3
    engine_slots: int = 2
    engine_seconds: float = 0.5
    cycles: int = 1
    """Fault cycles (kill, poison job, Redis restart, DB cut, kill, engine outage), one after another."""
    cycle_s: float = 70.0
    engine_down_s: float = 20.0
    db_cut_s: float = 5.0
    deadline_s: float = 170.0
    base_port: int = 22100

    @property
    def pages(self) -> int:
        return self.jobs * self.documents_per_job * self.pages_per_document


@dataclass
class Fault:
    kind: str
    started: datetime
    repaired: datetime | None = None
    detail: str = ""
    running_at_start: list[int] = field(default_factory=list)


@dataclass
class ChaosRun:
    plan: ChaosPlan
    sessions: sessionmaker[Session]
    job_ids: list[int]
    faults: list[Fault]
    seconds: float
    finished: bool
    logs: Path
    engine: ChaosEngine
    poison_job: int | None = None
    stopped_late: list[str] = field(default_factory=list)
    """Processes that outlived 30 s after SIGTERM at the end (and were killed)."""


def worker_env(plan: ChaosPlan, database_url: str, broker_url: str, engine_url: str) -> dict[str, str]:
    return {
        "OCRQ_DATABASE_URL": database_url,
        "OCRQ_BROKER_URL": broker_url,
        "OCRQ_ENGINES": "vllm,tesseract",
        "OCRQ_VLLM_URL": engine_url,
        "OCRQ_VLLM_SERVED_MODEL_NAME": SERVED_NAME,
        "OCRQ_VLLM_ADAPT_EVERY_S": "0",
        "OCRQ_VLLM_MAX_IN_FLIGHT": str(plan.concurrency),
        "OCRQ_VLLM_RETRIES": "1",
        "OCRQ_VLLM_BACKOFF_S": "0.2",
        "OCRQ_VLLM_CONNECT_TIMEOUT": "2",
        "OCRQ_VLLM_READ_TIMEOUT": "60",
        "OCRQ_TESSERACT_LANGS": "eng",
        "OCRQ_RENDER_DPI": "60",
        "OCRQ_TEXT_LAYER": "off",  # typed PDFs stand in for scans: every page goes to the engine
        "OCRQ_FALLBACK_AFTER_SECONDS": "60",  # outlasts the 20 s outage; bounds the poison page's wait
        "OCRQ_PAGE_LEASE_SECONDS": "6",
        "OCRQ_RECONCILE_INTERVAL": "5",
        "OCRQ_RECONCILE_GRACE": "5",
        "OCRQ_PAGE_RETRY_BACKOFF_SECONDS": "1",
        "OCRQ_VISIBILITY_TIMEOUT": "3600",
    }


def make_documents(root: Path, plan: ChaosPlan) -> list[Path]:
    folders = []
    for job in range(plan.jobs):
        folder = root / f"job{job}"
        folder.mkdir(parents=True)
        for number in range(plan.documents_per_job):
            texts = [f"Job {job} document {number} page {k}" for k in range(plan.pages_per_document)]
            make_text_pdf(folder / f"doc{number:03d}.pdf", texts, size=SMALL_PAGE)
        folders.append(folder)
    return folders


def make_poison_job(root: Path) -> Path:
    folder = root / "poison"
    folder.mkdir()
    make_text_pdf(folder / "healthy.pdf", ["A healthy page", "Another healthy page"], size=SMALL_PAGE)
    make_text_pdf(folder / "poison.pdf", ["The page that crashes its engine"], size=POISON_PAGE)
    return folder


class Chaos:
    """Owns every process and server of one run; :meth:`run` returns what the database says happened."""

    def __init__(self, plan: ChaosPlan, workdir: Path, postgres_url: str, log: Callable[[str], None] = print):
        self.plan, self.workdir, self.direct_url, self.log = plan, workdir, postgres_url, log
        self.random = random.Random(plan.seed)
        port = plan.base_port
        self.redis = RedisServer(port, workdir)
        self.proxy = TcpProxy(_host_port(postgres_url), port + 1)
        self.engine = ChaosEngine(port + 2, plan.engine_slots, plan.engine_seconds)
        self.logs = workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.faults: list[Fault] = []
        self.workers: list = []

    def run(self) -> ChaosRun:
        upgrade(self.direct_url)
        sessions = make_session_factory(make_engine(self.direct_url))
        folders = make_documents(self.workdir / "in", self.plan)
        poison = make_poison_job(self.workdir / "in")
        self.redis.start(), self.proxy.start(), self.engine.start()
        proxied = self.direct_url.replace(_netloc(self.direct_url), f"127.0.0.1:{self.proxy.port}")
        env = worker_env(self.plan, proxied, self.redis.url, self.engine.url)
        self.processes = Processes(env, self.logs)
        try:
            run = self._run(sessions, folders, poison, env)
        finally:
            late = self.processes.stop_all()
            self.engine.stop(), self.proxy.cut(), self.redis.kill()
        run.stopped_late = late
        return run

    def _run(self, sessions: sessionmaker[Session], folders: list[Path], poison: Path, env: dict) -> ChaosRun:
        self.workers = [self._start_worker(n) for n in range(self.plan.workers)]
        self.processes.start("beat", name="beat")
        submitter = env | {"OCRQ_DATABASE_URL": self.direct_url}  # jobs record the engine settings
        settings = build_settings(
            **{key.removeprefix("OCRQ_").lower(): value for key, value in submitter.items()}
        )
        dispatcher = Dispatcher(create_app(settings), sessions, settings)
        started = time.monotonic()
        job_ids = [dispatcher.submit(walk_sources([folder])) for folder in folders]
        self.log(f"chaos seed {self.plan.seed}: {self.plan.pages} pages in {len(job_ids)} jobs")
        poison_job: list[int] = []
        timeline = threading.Thread(
            target=self._timeline, args=(sessions, dispatcher, poison, poison_job, started), daemon=True
        )
        timeline.start()
        finished = _wait_jobs(sessions, job_ids, poison_job, started + self.plan.deadline_s, timeline)
        seconds = time.monotonic() - started
        all_jobs = job_ids + poison_job
        return ChaosRun(
            self.plan,
            sessions,
            all_jobs,
            self.faults,
            seconds,
            finished,
            self.logs,
            self.engine,
            poison_job[0] if poison_job else None,
        )

    def _timeline(
        self, sessions: sessionmaker[Session], dispatcher: Dispatcher, poison: Path, out: list[int], t0: float
    ) -> None:
        for cycle in range(self.plan.cycles):
            base = t0 + cycle * self.plan.cycle_s
            steps = [
                (4, lambda: self._kill_worker(sessions)),
                (9, lambda: out.append(self._submit_poison(dispatcher, poison))) if cycle == 0 else None,
                (14, lambda: self._restart_redis(sessions)),
                (24, lambda: self._cut_database(sessions)),
                (36, lambda: self._kill_worker(sessions)),
                (44, lambda: self._stop_engine(sessions)),
            ]
            for offset, action in filter(None, steps):
                _sleep_until(base + offset + self.random.uniform(0, 3))
                action()

    def _submit_poison(self, dispatcher: Dispatcher, poison: Path) -> int:
        """At top priority, so the poison page meets a working engine, not the backlog's end."""
        self.log(f"{time.strftime('%H:%M:%S')} fault: poison page submitted")
        return dispatcher.submit(walk_sources([poison]), priority=9)

    def _start_worker(self, number: int) -> object:
        name = f"w{number}-{len(self.faults)}"
        return (number, self.processes.worker(name, "--concurrency", str(self.plan.concurrency)))

    def _fault(self, kind: str, sessions: sessionmaker[Session], detail: str = "") -> Fault:
        fault = Fault(kind, datetime.now(UTC), detail=detail, running_at_start=_running(sessions))
        self.faults.append(fault)
        self.log(f"{time.strftime('%H:%M:%S')} fault: {kind} {detail}")
        return fault

    def _kill_worker(self, sessions: sessionmaker[Session]) -> None:
        index = self.random.randrange(len(self.workers))
        number, process = self.workers[index]
        fault = self._fault("worker_sigkill", sessions, f"worker {number}")
        self.processes.kill(process, signal.SIGKILL)
        time.sleep(1)
        self.workers[index] = self._start_worker(number)
        fault.repaired = datetime.now(UTC)

    def _restart_redis(self, sessions: sessionmaker[Session]) -> None:
        fault = self._fault("redis_restart_empty", sessions)
        self.redis.restart_empty(down_s=1)
        fault.repaired = datetime.now(UTC)

    def _cut_database(self, sessions: sessionmaker[Session]) -> None:
        fault = self._fault("database_cut", sessions, f"{self.plan.db_cut_s:.0f} s")
        self.proxy.cut()
        time.sleep(self.plan.db_cut_s)
        self.proxy.restore()
        fault.repaired = datetime.now(UTC)

    def _stop_engine(self, sessions: sessionmaker[Session]) -> None:
        fault = self._fault("engine_down", sessions, f"{self.plan.engine_down_s:.0f} s")
        self.engine.stop()
        time.sleep(self.plan.engine_down_s)
        self.engine.start()
        fault.repaired = datetime.now(UTC)


def _running(sessions: sessionmaker[Session]) -> list[int]:
    with sessions() as session:
        return list(session.scalars(select(Page.id).where(Page.status == "running")))


def _wait_jobs(
    sessions: sessionmaker[Session],
    jobs: list[int],
    extra: list[int],
    deadline: float,
    timeline: threading.Thread,
) -> bool:
    while time.monotonic() < deadline:
        if not timeline.is_alive() and extra and _all_finished(sessions, jobs + extra):
            return True
        time.sleep(1)
    return False


def _all_finished(sessions: sessionmaker[Session], job_ids: list[int]) -> bool:
    with sessions() as session:
        open_jobs = session.scalars(
            select(Job.id).where(Job.id.in_(job_ids), Job.finished_at.is_(None))
        ).all()
        documents = session.scalars(select(Document.id).where(Document.job_id.in_(job_ids))).all()
    return not open_jobs and bool(documents)


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def _netloc(url: str) -> str:
    return url.split("@", 1)[1].split("/", 1)[0]


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = _netloc(url).partition(":")
    return host, int(port or 5432)
