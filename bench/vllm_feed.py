"""Feed efficiency: does the distributed path keep a vLLM-like server full?

A capacity server (N slots x S s per request; capacity N/S pages/s) stands in
for vLLM; one ``ocrq worker --role all`` on real Redis + Postgres renders real
200-DPI pages (the corpus PDFs when present), encodes them per the registry
(dots.ocr) and sends them. Prints feed efficiency = pages/s / capacity over the
whole job (submit to last page recorded), the server's slot utilisation while
busy, and the worker's CPU seconds per page. Targets: >= 0.97; <= 0.1 CPU s.

    .venv/bin/python -m bench.vllm_feed [--pages 320] [--slots 16] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pymupdf
import redis

from bench.capacity_server import Capacity, capacity_server
from bench.queue_overhead import BROKER_URL, CLI, fresh_database
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import build_settings
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.embedded import job_progress
from ocrq.worker.models.registry import bundled_registry
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.dispatch import Dispatcher

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SOURCES = ("debian-faq.ru.pdf", "GeoTopo-komprimiert.pdf", "pdflatex-4-pages.pdf", "multicolumn.pdf")


def pages_pdf(path: Path, pages: int) -> None:
    """``pages`` real pages cycled from the corpus PDFs (generated text pages without a corpus)."""
    sources = [pymupdf.open(CORPUS / name) for name in SOURCES if (CORPUS / name).exists()]
    out = pymupdf.open()
    while out.page_count < pages and sources:
        for source in sources:
            take = min(source.page_count, pages - out.page_count)
            out.insert_pdf(source, to_page=take - 1)
    while out.page_count < pages:
        out.new_page().insert_text((72, 72 + out.page_count % 600), f"generated page {out.page_count}")
    out.save(path, garbage=3, deflate=True)


def run(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    served = bundled_registry().get("dots.ocr").served_name
    with capacity_server(args.slots, args.seconds, served) as capacity:
        database_url = fresh_database()
        redis.Redis.from_url(BROKER_URL).flushdb()
        env = os.environ | {
            "OCRQ_DATABASE_URL": database_url,
            "OCRQ_BROKER_URL": BROKER_URL,
            "OCRQ_ENGINES": "vllm",
            "OCRQ_VLLM_URL": capacity.url,
            "OCRQ_VLLM_MAX_IN_FLIGHT": str(args.in_flight),
        }
        worker = subprocess.Popen(
            [*CLI, "worker", "--role", "all", "--loglevel", "WARNING"],
            env=env,
            stdout=(folder / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return _measure(args, folder, database_url, capacity, psutil.Process(worker.pid))
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait()


def _measure(
    args: argparse.Namespace, folder: Path, database_url: str, capacity: Capacity, worker: psutil.Process
) -> dict[str, float]:
    settings = build_settings(database_url=database_url, broker_url=BROKER_URL, engines=["vllm"])
    sessions = make_session_factory(make_engine(database_url))
    create_app(settings).control.ping(timeout=30)
    time.sleep(2)  # the worker's engines are built on its first page; let it settle first
    cpu_before = sum(worker.cpu_times()[:2])
    started = time.monotonic()
    job_id = Dispatcher(create_app(settings), sessions, settings).submit(walk_sources([folder / "pages.pdf"]))
    while job_progress(sessions, job_id).finished < args.pages:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    cpu = sum(worker.cpu_times()[:2]) - cpu_before
    done = job_progress(sessions, job_id).done
    return {
        "pages": args.pages,
        "done": done,
        "seconds": round(elapsed, 1),
        "pages_per_s": round(args.pages / elapsed, 2),
        "capacity_pages_per_s": args.slots / args.seconds,
        "feed_efficiency": round(args.pages / elapsed / (args.slots / args.seconds), 3),
        "server_utilisation_while_busy": round(capacity.utilisation(), 3),
        "worker_cpu_s_per_page": round(cpu / args.pages, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=320)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pages_pdf(Path(tmp) / "pages.pdf", args.pages)
        print(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
