"""Page preparation in a process pool: the same request bytes as the in-thread path, prepared once
per page even when the page comes again, cleaned up, a bad page failing only itself."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocrq.errors import PageRenderError
from ocrq.jobs.store import PageClaim
from ocrq.schemas import DocumentType, PageTask, PromptMode
from ocrq.settings import Settings
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.engines.chain import EngineChain
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.engines.vllm.request import prepare_image
from ocrq.worker.models.registry import bundled_registry
from ocrq.worker.prepare.entries import discard, model_input_for, private_root, sweep
from ocrq.worker.prepare.hook import preparer_for, start_early
from ocrq.worker.prepare.pool import PagePreparer, PreparePool
from tests.factories import make_text_pdf
from tests.fault_server import FaultServer, request_image, running_fault_server

LIMITS = RenderLimits(dpi=100, max_page_pixels=40_000_000, max_source_pixels=200_000_000, max_pages=100)


class CountingPool(PreparePool):
    """The real pool, counting the pages it was asked to prepare."""

    def __init__(self, processes: int, root: Path) -> None:
        super().__init__(processes, root)
        self.orders = 0

    def run(self, order: object) -> None:
        self.orders += 1
        super().run(order)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CountingPool]:
    started = CountingPool(1, tmp_path_factory.mktemp("prepared"))
    yield started
    started.close()


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    return make_text_pdf(tmp_path / "three.pdf", ["Первая страница", "Second page", "Third page"])


def claim(path: Path, index: int, page_id: int = 7) -> PageClaim:
    return PageClaim(page_id, 1, index, path, DocumentType.PDF)


def dots_preparer(pool: PreparePool, scope: str = "test") -> PagePreparer:
    spec = bundled_registry().get("dots.ocr")
    return PagePreparer(pool, scope, LIMITS, "L", spec, spec.max_pixels)


def test_a_prepared_page_sends_exactly_what_the_page_thread_would(pool: CountingPool, pdf: Path) -> None:
    spec = bundled_registry().get("dots.ocr")
    image = dots_preparer(pool).page_image(claim(pdf, 1))
    ready = model_input_for(image, spec.key, spec.max_pixels)
    with open_document(pdf, DocumentType.PDF, LIMITS) as document:
        rendered = document.render(1, "L")
    assert ready is not None and (image.size, image.mode) == (rendered.size, "L")
    assert ready.data_url == prepare_image(rendered, spec, spec.max_pixels).data_url
    assert image.tobytes() == rendered.tobytes() and image.info["dpi"] == rendered.info["dpi"]
    assert model_input_for(image, spec.key, spec.max_pixels // 2) is None  # another budget: not this one
    assert model_input_for(image, "another-model", spec.max_pixels) is None


def test_a_redelivered_page_is_not_prepared_twice_and_finishing_removes_it(
    pool: CountingPool, pdf: Path
) -> None:
    preparer, page = dots_preparer(pool, "redelivery"), claim(pdf, 0, page_id=11)
    before = pool.orders
    first = preparer.page_image(page)
    second = preparer.page_image(page)
    assert pool.orders - before == 1
    assert first.tobytes() == second.tobytes()
    entry = Path(first.filename).parent  # type: ignore[attr-defined]
    preparer.finished(page)
    assert not entry.exists()
    preparer.page_image(page)
    assert pool.orders - before == 2


def test_entries_are_per_database_and_settings(pool: CountingPool, pdf: Path) -> None:
    one, other = dots_preparer(pool, "db-a|key"), dots_preparer(pool, "db-b|key")
    first = one.page_image(claim(pdf, 0, page_id=3))
    second = other.page_image(claim(pdf, 2, page_id=3))
    assert first.filename != second.filename  # type: ignore[attr-defined]
    assert first.tobytes() != second.tobytes()


def test_a_page_that_cannot_render_fails_alone(pool: CountingPool, pdf: Path) -> None:
    preparer = dots_preparer(pool, "bad")
    with pytest.raises(PageRenderError, match="no page 9"):
        preparer.page_image(claim(pdf, 8))
    assert preparer.page_image(claim(pdf, 2)).size[0] > 0


def test_sweep_removes_what_a_dead_worker_left(tmp_path: Path) -> None:
    old, fresh = tmp_path / "old", tmp_path / "fresh"
    old.mkdir(), fresh.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert sweep(tmp_path, 3600) == 1
    assert not old.exists() and fresh.exists()
    discard(fresh)
    assert sweep(tmp_path / "missing", 1) == 0


def test_a_directory_others_can_write_is_not_trusted(tmp_path: Path) -> None:
    """Its files are sent as the page: a group- or world-writable root gives way to a private one."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    chosen = private_root(shared)
    assert chosen != shared and chosen.stat().st_mode & 0o077 == 0
    mine = private_root(tmp_path / "mine")
    assert mine == tmp_path / "mine" and mine.stat().st_mode & 0o777 == 0o700
    discard(chosen)


def test_the_vllm_engine_sends_the_prepared_image(pool: CountingPool, pdf: Path) -> None:
    """Through the real engine and a loopback server: what arrives is the page, prepared elsewhere."""
    with running_fault_server() as server:
        chain = _vllm_chain(server)
        image = dots_preparer(pool, "engine").page_image(claim(pdf, 0))
        result, attempts = chain.recognize(image, PageTask(PromptMode.TEXT_ONLY))
        chain.close()
    assert result is not None and [a.outcome for a in attempts] == ["ok"]
    sent = request_image(server.requests[0])
    assert sent.mode == "L" and sent.size[0] >= image.size[0]


def test_preparation_is_for_queue_workers_with_vllm_first(pool: CountingPool, settings: Settings) -> None:
    task = PageTask(PromptMode.LAYOUT_ALL)
    assert preparer_for(settings, build_chain(settings), LIMITS, task) is None  # Tesseract first
    with running_fault_server() as server:
        chain = _vllm_chain(server)
        off = settings.model_copy(update={"prepare_processes": 0})
        assert preparer_for(off, chain, LIMITS, task) is None
        on = settings.model_copy(update={"prepare_processes": 1, "prepare_dir": pool.root})
        preparer = preparer_for(on, chain, LIMITS, task)
        chain.close()
    assert preparer is not None and preparer.spec is not None and preparer.mode == "L"


def _vllm_chain(server: FaultServer) -> EngineChain:
    settings = Settings(engines=["vllm"], vllm_url=server.url, vllm_served_model_name="test-model")
    return build_chain(settings)


def test_the_pool_starts_with_a_page_worker_whose_first_engine_is_vllm(settings: Settings) -> None:
    vllm_first = settings.model_copy(update={"engines": ["vllm", "tesseract"], "prepare_processes": 1})
    assert not start_early(settings, {"gpu", "cpu"})  # Tesseract first
    assert not start_early(vllm_first, {"cpu"})  # an ingest-only worker
    assert not start_early(vllm_first.model_copy(update={"prepare_processes": 0}), {"gpu"})
    assert start_early(vllm_first, {"gpu"})
