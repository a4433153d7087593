"""What one /metrics scrape costs as the page history grows (SQLite file; Postgres with --postgres URL).

The page counters (``ocrq_pages_processed_total`` ...) cost nothing per scrape; the database families
(jobs/documents/pages by status, OCR latency histogram, fallbacks) aggregate the whole history, so their
cost grows with it. Prints seconds per scrape at each size and the ratio; asserts nothing.

    .venv/bin/python -m bench.metrics_scrape [--sizes 1000,10000,100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from ocrq.api.rest.metrics import make_registry
from ocrq.settings import build_settings
from ocrq.worker.batch import open_database
from tests.metrics_history import add_history, counted_statements, timed_scrape


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        settings = build_settings(database_url=url)
        engine, sessions = open_database(settings)
        registry = make_registry(sessions, settings)
        done, first = 0, None
        for size in sizes:
            add_history(sessions, size - done)
            done = size
            with counted_statements(engine) as statements:
                seconds = statistics.median(timed_scrape(registry)[0] for _ in range(5))
            first = first or seconds
            print(f"{size:>8} pages: {seconds * 1000:8.1f} ms per scrape, {len(statements) // 5} statements, "
                  f"x{seconds / first:.1f} of the smallest")
        engine.dispose()


if __name__ == "__main__":
    main()
