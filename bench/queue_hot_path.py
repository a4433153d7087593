"""Where a page's queue overhead goes: the pipeline alone (claim, render, engine, finish) on Postgres,
split by step, beside what the Celery worker spends per page in bench/queue_overhead.py.

No Celery here: pages are processed in this process, one at a time, with the InstantEngine; CPU and
wall time per step are summed from wrappers around the store's and the pipeline's own methods.

    .venv/bin/python -m bench.queue_hot_path [--pages 300]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.instant_engine import instant_chain
from bench.queue_overhead import fresh_database, tiny_pdf
from ocrq.db.session import make_engine, make_session_factory
from ocrq.jobs.store import JobStore
from ocrq.settings import build_settings
from ocrq.worker.documents.ingest import create_job, ingest_document
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.pipeline import pipeline_for


def timed(totals: dict[str, list[float]], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name][0] += time.process_time() - cpu
            totals[name][1] += time.perf_counter() - wall

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top functions")
    args = parser.parse_args()
    database_url = fresh_database()
    settings = build_settings(database_url=database_url, engines=["tesseract"])
    sessions = make_session_factory(make_engine(database_url))
    store = JobStore(sessions, lease_seconds=60)
    pipeline = pipeline_for(settings, store, instant_chain)
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    store.claim_page = timed(totals, "claim (SQL)", store.claim_page)  # type: ignore[method-assign]
    store.finish_page = timed(totals, "finish (SQL)", store.finish_page)  # type: ignore[method-assign]
    pipeline._render = timed(totals, "render", pipeline._render)  # type: ignore[method-assign]
    pipeline.chain.recognize = timed(totals, "engine", pipeline.chain.recognize)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        tiny_pdf(Path(tmp) / "doc.pdf", args.pages)
        job_id = create_job(sessions, walk_sources([Path(tmp) / "doc.pdf"]), settings, queue="gpu")
        document_id = store_document(sessions, job_id)
        page_ids = ingest_document(sessions, settings, document_id)
        profile = cProfile.Profile() if args.profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        for page_id in page_ids:
            timed(totals, "process (all)", pipeline.process)(page_id)
        if profile:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pages = len(page_ids)
    for name, (step_cpu, step_wall) in totals.items():
        print(f"{name:14s} cpu {step_cpu / pages * 1000:6.2f} ms/page  wall {step_wall / pages * 1000:6.2f}")
    print(f"pipeline alone: {pages / wall:.0f} pages/s in one thread, {cpu / pages * 1000:.2f} CPU ms/page")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


def store_document(sessions: Any, job_id: int) -> int:
    from sqlalchemy import select

    from ocrq.db.models import Document

    with sessions() as session:
        return session.scalars(select(Document.id).where(Document.job_id == job_id)).one()


if __name__ == "__main__":
    main()
