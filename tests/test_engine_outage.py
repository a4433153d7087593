"""A vLLM server that dies mid-batch and comes back: every page is still done, every attempt is
recorded, the circuit opens (pages stop waiting on the dead server) and closes when it returns.

The server is our loopback fault server (a real vLLM cannot be made to fail on cue); the chain,
breaker, pipeline, runner and database are the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from ocrq.db.models import Attempt, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import Settings
from ocrq.worker.batch import BatchRequest, run_embedded_batch
from ocrq.worker.engines.breaker import CircuitBreaker
from ocrq.worker.engines.chain import EngineChain
from ocrq.worker.engines.tesseract import TesseractEngine
from ocrq.worker.engines.vllm.engine import vllm_engine
from tests.factories import make_text_pdf
from tests.fault_server import Step, nested_error, running_fault_server

PAGES = 16


class Ticks:
    """A clock that advances one second each time the breaker reads it: the test needs no timing luck."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_pages_flow_around_an_outage_and_back(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    make_text_pdf(tmp_path / "in.pdf", [f"Outage test page {n}" for n in range(PAGES)])
    with running_fault_server() as server:
        server.queue(Step(), Step(), Step(), *[Step(503, nested_error(503, "EngineCore died"))] * 3)
        settings = make_settings(
            engines=["vllm", "tesseract"], vllm_url=server.url, vllm_served_model_name="test-model",
            vllm_retries=0, prompt_mode="text_only", page_workers=1, tesseract_langs="eng",
            text_layer="off",  # the typed PDF stands in for scans: the engines must read every page
        )  # fmt: skip

        def chain(settings: Settings) -> EngineChain:
            engines = [vllm_engine(settings), TesseractEngine.from_settings(settings)]
            return EngineChain(engines, [CircuitBreaker(3, reset_after_s=5, clock=Ticks()), CircuitBreaker()])

        request = BatchRequest([tmp_path / "in.pdf"], tmp_path / "out")
        batch = run_embedded_batch(settings, request, chain_factory=chain)
    assert batch["counts"]["pages"] == {"total": PAGES, "done": PAGES, "failed": 0, "degraded": 7}
    by_page = _attempts_by_page(settings)
    assert by_page[:3] == [["vllm:ok"]] * 3
    assert by_page[3:6] == [["vllm:error", "tesseract:ok"]] * 3  # the outage: three failures open the circuit
    assert by_page[6:10] == [["tesseract:ok"]] * 4  # open: pages do not wait on the dead server
    assert by_page[10:] == [["vllm:ok"]] * (PAGES - 10)  # the probe found it back; the circuit closed
    assert len(server.requests) == PAGES - 4  # nothing was sent while the circuit was open
    assert batch["counts"]["engines"] == {"vllm": PAGES - 7, "tesseract": 7}


def _attempts_by_page(settings: Settings) -> list[list[str]]:
    sessions = make_session_factory(make_engine(settings.database_url))
    with sessions() as session:
        rows = session.execute(
            select(Page.index, Attempt.engine, Attempt.outcome).join(Attempt).order_by(Page.index, Attempt.id)
        ).all()
    pages: list[list[str]] = [[] for _ in range(PAGES)]
    for index, engine, outcome in rows:
        pages[index].append(f"{engine}:{outcome}")
    return pages
