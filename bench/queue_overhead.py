"""Queue overhead: pages/s end to end through Redis + Celery + Postgres, engine answering at once.

The engine is the InstantEngine double (``OCRQ_CHAIN_FACTORY``) and pages are
tiny (rendering ~1 ms), so what is measured is ocrq's queue path: ingest,
messages, claims, result writes, counters. One worker process, then two, each
under its own Celery name and all answering before the clock starts. Per run:
a cold job (submission to last page, engines built on the way), the same pages
again warm, and the steady rate between the warm job's first and last page.

Why earlier figures disagreed (113/150 vs 55/64 pages/s): the old bench timed one cold job from
submission (ingest of one 600-page document, engines built on the first pages) and started the
clock once *any* worker answered a ping, with both workers under one Celery name, so the second
was often still importing. Cold runs gave 75-83 pages/s with one or two workers alike; warm and
steady rates reach 106-114 with one worker and 117-157 with two (issue 16; all on a loaded
2-core machine). A worker spends ~7-8 ms CPU per page; the pipeline alone (claim, finish) 3.5 ms
(bench/queue_hot_path.py), so Celery and Redis messaging take about half.
Needs the local Redis (DB 12) and Postgres; prints figures, asserts nothing.

    .venv/bin/python -m bench.queue_overhead [--pages 600]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pymupdf
import redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.migrations import upgrade
from ocrq.db.models import Document, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import build_settings
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.embedded import job_progress
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.dispatch import Dispatcher
from ocrq.worker.queue.roles import worker_argv

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BROKER_URL = os.environ.get("OCRQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
"""A Redis DB of the bench's own (it is flushed); OCRQ_BENCH_REDIS_URL moves it."""
CLI = [sys.executable, "-c", "from ocrq.api.cli import main; main()"]


def tiny_pdf(path: Path, pages: int) -> None:
    document = pymupdf.open()
    for number in range(pages):
        document.new_page(width=72, height=72).insert_text((10, 40), str(number))
    document.save(path)


def fresh_database() -> str:
    name = f"ocrq_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    upgrade(url)
    return url


def run(
    workers: int, pages: int, folder: Path, legacy: bool = False, events: bool = True
) -> dict[str, object]:
    """A cold job (engines and pools built on its first pages), then the same pages again, warm.

    ``legacy``: start workers as this bench did before: all named ``all@host`` by ``ocrq worker``,
    the clock started once *any* worker answered a ping (the second may still be importing).
    """
    database_url = fresh_database()
    redis.Redis.from_url(BROKER_URL).flushdb()
    env = os.environ | {
        "OCRQ_DATABASE_URL": database_url,
        "OCRQ_BROKER_URL": BROKER_URL,
        "OCRQ_CHAIN_FACTORY": "bench.instant_engine:instant_chain",
        "OCRQ_PAGE_WORKERS": "8",
    }
    settings = build_settings(database_url=database_url, broker_url=BROKER_URL, engines=["tesseract"])
    start = _start_legacy_worker if legacy else _start_worker
    processes = [start(env, folder / f"w{n}.log", f"bench{n}") for n in range(workers)]
    sessions = make_session_factory(make_engine(database_url))
    dispatcher = Dispatcher(create_app(settings), sessions, settings)
    try:
        if not legacy:
            _wait_for_names([f"bench{n}" for n in range(workers)])
        if not events:  # what the workers' task events (for Flower) cost per page
            create_app(settings).control.disable_events()
        cpu_before = _cpu(processes)
        cold, _ = _timed_job(dispatcher, sessions, folder, pages)
        warm, steady = _timed_job(dispatcher, sessions, folder, pages)
        cpu = _cpu(processes) - cpu_before
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
    return {
        "start": "legacy (one name, any ping)" if legacy else "named, all answered",
        "worker_task_events": events,
        "workers": workers,
        "pages": pages,
        "cold_pages_per_s": round(pages / cold, 1),
        "warm_pages_per_s": round(pages / warm, 1),
        "steady_pages_per_s": round(steady, 1),
        "worker_cpu_ms_per_page": round(cpu / (2 * pages) * 1000, 2),
    }


def _timed_job(
    dispatcher: Dispatcher, sessions: sessionmaker[Session], folder: Path, pages: int
) -> tuple[float, float]:
    """Seconds from submission to the last page recorded, and pages/s between first and last page."""
    started = time.perf_counter()
    job_id = dispatcher.submit(walk_sources([folder / "doc.pdf"]), reuse=False)
    while job_progress(sessions, job_id).finished < pages:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    with sessions() as session:
        first, last = session.execute(
            select(func.min(Page.finished_at), func.max(Page.finished_at))
            .join(Document)
            .where(Document.job_id == job_id)
        ).one()
    return elapsed, (pages - 1) / max((last - first).total_seconds(), 1e-6)


def _start_worker(env: dict[str, str], log: Path, name: str) -> subprocess.Popen[bytes]:
    """A worker under a name of its own: two under one name (``all@host``) confuse Celery's control
    replies and let the clock start before the second is up (why earlier runs disagreed)."""
    argv = worker_argv(build_settings(broker_url=BROKER_URL), "all", 9, "WARNING")
    argv[argv.index("--hostname") + 1] = f"{name}@%h"
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "ocrq.worker.queue.celery_app", *argv],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _start_legacy_worker(env: dict[str, str], log: Path, _name: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*CLI, "worker", "--role", "all", "--loglevel", "WARNING"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = create_app(build_settings(broker_url=BROKER_URL))
    for _ in range(120):
        if client.control.ping(timeout=0.5):
            break
    return process


def _wait_for_names(names: list[str]) -> None:
    client = create_app(build_settings(broker_url=BROKER_URL))
    for _ in range(240):
        answered = {name.split("@")[0] for reply in client.control.ping(timeout=1.0) for name in reply}
        if answered >= set(names):
            return
    raise RuntimeError(f"workers {names} did not all answer")


def _cpu(processes: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for process in processes:
        times = psutil.Process(process.pid).cpu_times()
        total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--events-off-too", action="store_true", help="also run named workers without events")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tiny_pdf(folder / "doc.pdf", args.pages)
        results = [run(count, args.pages, folder, legacy) for legacy in (True, False) for count in (1, 2)]
        if args.events_off_too:
            results += [run(count, args.pages, folder, events=False) for count in (1, 2)]
    for result in results:
        print(result)
    one, two = results[2], results[3]
    ratio = float(two["warm_pages_per_s"]) / float(one["warm_pages_per_s"])  # type: ignore[arg-type]
    print(f"two workers / one worker (named, warm): {ratio:.2f}x (target ≥ 150 pages/s with two)")


if __name__ == "__main__":
    main()
