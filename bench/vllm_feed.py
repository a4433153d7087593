"""Feed efficiency: does the distributed path keep a vLLM-like server full?

A capacity server (N slots x S s per request; capacity N/S pages/s) stands in
for vLLM; one ``ocrq worker --role all`` on real Redis + Postgres renders real
200-DPI pages (the corpus PDFs when present), encodes them per the registry
(dots.ocr) and sends them. Prints feed efficiency = pages/s / capacity over the
whole job (submit to last page recorded), the server's slot utilisation while
busy, and the worker's CPU seconds per page: the feeding process alone and with its
preparation processes (``OCRQ_PREPARE_PROCESSES``: 0 renders in the page threads,
-1 one process per core), beside MuPDF's grey render of the same pages measured in
the same run. Targets: >= 0.97; feeder <= 2 x the render.

    .venv/bin/python -m bench.vllm_feed [--pages 320] [--slots 16,32,48] [--seconds 2] [--prepare 0,-1]
"""

from __future__ import annotations

import argparse
import contextlib
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
            if take > 0:  # to_page=-1 would mean "to the last page"
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
            "OCRQ_PREPARE_PROCESSES": str(args.prepare),
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
    cpu_before, tree_before = _cpu(worker), _tree_cpu(worker)
    started = time.monotonic()
    job_id = Dispatcher(create_app(settings), sessions, settings).submit(walk_sources([folder / "pages.pdf"]))
    while job_progress(sessions, job_id).finished < args.pages:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    cpu, tree = _cpu(worker) - cpu_before, _total(_tree_cpu(worker), tree_before)
    done = job_progress(sessions, job_id).done
    return {
        "prepare_processes": args.prepare,
        "pages": args.pages,
        "done": done,
        "seconds": round(elapsed, 1),
        "pages_per_s": round(args.pages / elapsed, 2),
        "capacity_pages_per_s": args.slots / args.seconds,
        "feed_efficiency": round(args.pages / elapsed / (args.slots / args.seconds), 3),
        "server_utilisation_while_busy": round(capacity.utilisation(), 3),
        "feeder_cpu_s_per_page": round(cpu / args.pages, 4),
        "worker_and_pool_cpu_s_per_page": round(tree / args.pages, 4),
        "feeder_peak_rss_mb": peak_rss_mb(worker.pid),
        "pool_peak_rss_mb": [peak_rss_mb(child.pid) for child in worker.children() if _is_pool(child)],
    }


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _tree_cpu(worker: psutil.Process) -> dict[int, float]:
    """CPU seconds of the worker and each of its children (the preparation pool), by pid."""
    seconds = {worker.pid: _cpu(worker)}
    for child in worker.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            seconds[child.pid] = _cpu(child)
    return seconds


def _is_pool(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "spawn_main" in " ".join(process.cmdline())
    return False


def peak_rss_mb(pid: int) -> int:
    """The kernel's high-water mark of the process's resident memory (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


def _total(after: dict[int, float], before: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def mupdf_render_s_per_page(path: Path, pages: int, dpi: int = 200) -> float:
    """MuPDF's grey render alone (the floor of any page preparation), on the benchmark's own pages."""
    document = pymupdf.open(path)
    zoom = dpi / 72
    started = time.process_time()
    for index in range(pages):
        document[index].get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY)
    return (time.process_time() - started) / pages


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=320)
    parser.add_argument("--slots", default="16", help="comma-separated server sizes to run")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--prepare", default="0,-1", help="comma-separated OCRQ_PREPARE_PROCESSES values")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pages_pdf(Path(tmp) / "pages.pdf", args.pages)
        render = mupdf_render_s_per_page(Path(tmp) / "pages.pdf", min(args.pages, 40))
        print({"mupdf_grey_render_cpu_s_per_page": round(render, 4), "cores": os.cpu_count()})
        for slots in [int(value) for value in args.slots.split(",")]:
            for prepare in [int(value) for value in args.prepare.split(",")]:
                case = argparse.Namespace(**vars(args) | {"slots": slots, "prepare": prepare})
                result = run(case, Path(tmp))
                result["feeder_cpu_over_render"] = round(result["feeder_cpu_s_per_page"] / render, 2)
                print(result, flush=True)


if __name__ == "__main__":
    main()
