"""A scrape issues the same statements over 10 pages as over 100,000: no query per row (N+1)."""

from __future__ import annotations

from collections.abc import Callable

from ocrq.api.rest.metrics import make_registry
from ocrq.settings import Settings
from ocrq.worker.batch import open_database
from tests.metrics_history import add_history, counted_statements, timed_scrape

PAGES = 100_000


def test_scrape_statements_do_not_grow_with_history(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    engine, sessions = open_database(settings)
    registry = make_registry(sessions, settings)
    try:
        add_history(sessions, 10)
        with counted_statements(engine) as small:
            timed_scrape(registry)
        add_history(sessions, PAGES)
        with counted_statements(engine) as large:
            _, body = timed_scrape(registry)
    finally:
        engine.dispose()
    assert len(large) == len(small) and len(small) <= 10, large
    assert f'ocrq_pages{{status="done"}} {PAGES + 10}.0'.encode() in body  # the scrape saw the rows
