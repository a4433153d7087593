"""A real queue worker whose first engine is vLLM prepares pages in its process pool: what reaches the
server is the page, a fallback engine still reads the pixels, and no prepared entry is left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ocrq.db.migrations import upgrade
from ocrq.db.models import Document, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import build_settings
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.dispatch import Dispatcher
from tests.factories import make_text_pdf
from tests.fault_server import FaultServer, Step, nested_error, request_image, running_fault_server
from tests.queue_harness import Processes, job_finished, wait_for

pytestmark = pytest.mark.slow

PAGES = 6


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with running_fault_server() as state:
        yield state


def test_a_queue_worker_sends_pool_prepared_pages_and_falls_back_on_them(
    tmp_path: Path, postgres_url: str, redis_url: str, server: FaultServer
) -> None:
    upgrade(postgres_url)
    prepared = tmp_path / "prepared"
    env = {
        "OCRQ_DATABASE_URL": postgres_url,
        "OCRQ_BROKER_URL": redis_url,
        "OCRQ_ENGINES": "vllm,tesseract",
        "OCRQ_VLLM_URL": server.url,
        "OCRQ_VLLM_SERVED_MODEL_NAME": "test-model",
        "OCRQ_VLLM_RETRIES": "0",
        "OCRQ_PROMPT_MODE": "text_only",
        "OCRQ_TESSERACT_LANGS": "eng",
        "OCRQ_PREPARE_PROCESSES": "1",
        "OCRQ_PREPARE_DIR": str(prepared),
        "OCRQ_PAGE_WORKERS": "2",
        "OCRQ_TEXT_LAYER": "off",  # the typed PDF stands in for scans: every page is prepared and sent
        "OCRQ_FALLBACK_AFTER_SECONDS": "0",  # the two failed pages fall back at once, not after a grace
    }
    server.queue(Step(), Step(), *[Step(500, nested_error(500, "EngineCore hiccup"))] * 2)
    folder = tmp_path / "in"
    folder.mkdir()
    make_text_pdf(folder / "doc.pdf", [f"Prepared page number {n}" for n in range(PAGES)])
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Processes(env, logs)
    settings = build_settings(**{key.removeprefix("OCRQ_").lower(): value for key, value in env.items()})
    sessions = make_session_factory(make_engine(postgres_url))
    try:
        processes.worker("w1")
        job_id = Dispatcher(create_app(settings), sessions, settings).submit(walk_sources([folder]))
        wait_for(lambda: job_finished(sessions, job_id), 120, "the job")
    finally:
        processes.stop_all()
    with sessions() as session:
        pages = session.execute(
            select(Page.status, Page.engine, Page.text, Page.width)
            .join(Document)
            .where(Document.job_id == job_id)
        ).all()
    assert [page.status for page in pages] == ["done"] * PAGES
    assert sorted(page.engine for page in pages) == ["tesseract"] * 2 + ["vllm"] * (PAGES - 2)
    fallback_text = " ".join(page.text or "" for page in pages if page.engine == "tesseract")
    assert fallback_text.count("Prepared page number") == 2  # Tesseract read the prepared render's pixels
    sent = [request_image(request) for request in server.requests]
    assert len(sent) == PAGES and {image.mode for image in sent} == {"L"}
    assert all(image.size[0] >= pages[0].width for image in sent)  # the whole page, not a thumbnail
    assert prepared.is_dir() and list(prepared.iterdir()) == []  # every entry removed once its page was
