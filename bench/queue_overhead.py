"""Queue overhead: pages/s end to end through Redis + Celery + Postgres, engine answering at once.

The engine is the InstantEngine double (``OCRQ_CHAIN_FACTORY``) and pages are
tiny (rendering ~1 ms), so what is measured is ocrq's queue path: ingest,
messages, claims, result writes, counters. One worker process, then two.
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

import pymupdf
import redis
from sqlalchemy import create_engine, text

from ocrq.db.migrations import upgrade
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import build_settings
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.embedded import job_progress
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.dispatch import Dispatcher

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


def run(workers: int, pages: int, folder: Path) -> dict[str, float]:
    database_url = fresh_database()
    redis.Redis.from_url(BROKER_URL).flushdb()
    env = os.environ | {
        "OCRQ_DATABASE_URL": database_url,
        "OCRQ_BROKER_URL": BROKER_URL,
        "OCRQ_CHAIN_FACTORY": "bench.instant_engine:instant_chain",
        "OCRQ_PAGE_WORKERS": "8",
    }
    settings = build_settings(database_url=database_url, broker_url=BROKER_URL, engines=["tesseract"])
    processes = [_start_worker(env, folder / f"w{n}.log") for n in range(workers)]
    sessions = make_session_factory(make_engine(database_url))
    try:
        started = time.perf_counter()
        job_id = Dispatcher(create_app(settings), sessions, settings).submit(
            walk_sources([folder / "doc.pdf"])
        )
        while job_progress(sessions, job_id).finished < pages:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
    return {
        "workers": workers,
        "pages": pages,
        "seconds": round(elapsed, 2),
        "pages_per_s": round(pages / elapsed, 1),
    }


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tiny_pdf(folder / "doc.pdf", args.pages)
        one, two = run(1, args.pages, folder), run(2, args.pages, folder)
    print(one)
    print(two)
    print(f"two workers / one worker: {two['pages_per_s'] / one['pages_per_s']:.2f}x (target ≥ 150 pages/s)")


if __name__ == "__main__":
    main()
