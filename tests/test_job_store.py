"""State transitions are idempotent: replayed deliveries never double-count (SQLite and Postgres)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page
from ocrq.errors import PageRenderError, UnreadableDocument
from ocrq.jobs.store import JobStore, PageFinish
from ocrq.schemas import DocumentType, PageResult
from ocrq.settings import Settings


def _job_with_pages(sessions: sessionmaker[Session], page_counts: list[int]) -> tuple[int, list[list[int]]]:
    with sessions.begin() as session:
        job = Job(result_key="k", settings={})
        for number, count in enumerate(page_counts):
            document = Document(
                path=f"/in/{number}.pdf",
                relpath=f"{number}.pdf",
                result_key="k",
                detected_type=DocumentType.PDF,
                page_count=count,
            )
            document.pages = [Page(index=i) for i in range(count)]
            job.documents.append(document)
        session.add(job)
        session.flush()
        return job.id, [[p.id for p in d.pages] for d in job.documents]


def _ok(text: str = "hello") -> PageFinish:
    return PageFinish(PageResult(text, text, "tesseract", "t"), None, 1.0, (10, 20))


def test_a_page_finished_twice_counts_once(sessions: sessionmaker[Session]) -> None:
    store = JobStore(sessions)
    job_id, [[page_id, _other]] = _job_with_pages(sessions, [2])
    claim = store.claim_page(page_id)
    assert claim is not None and claim.index == 0
    assert store.finish_page(claim, _ok("first")) is True
    assert store.finish_page(claim, _ok("second")) is False
    assert store.claim_page(page_id) is None
    with sessions() as session:
        document = session.get_one(Job, job_id).documents[0]
        assert (document.pages_done, document.pages_failed, document.status) == (1, 0, "running")
        assert session.get_one(Page, page_id).text == "first"


def test_document_and_job_close_with_the_last_page(sessions: sessionmaker[Session]) -> None:
    store = JobStore(sessions)
    job_id, [[first, second], [third]] = _job_with_pages(sessions, [2, 1])
    for page_id in (first, third):
        store.finish_page(store.claim_page(page_id), _ok())
    failing = store.claim_page(second)
    store.finish_page(failing, PageFinish(None, PageRenderError("broken stream"), 2.0, None))
    with sessions() as session:
        job = session.get_one(Job, job_id)
        partial, done = job.documents
        assert (partial.status, done.status, job.status) == ("partial", "done", "partial")
        assert partial.error_code == "render_failed"
        assert "1 of 2 page(s) failed" in partial.error_message and "broken stream" in partial.error_message
        assert job.finished_at is not None


def test_a_failed_document_closes_an_otherwise_done_job(sessions: sessionmaker[Session]) -> None:
    store = JobStore(sessions)
    job_id, [[page_id], _empty] = _job_with_pages(sessions, [1, 0])
    with sessions() as session:
        bad_document_id = session.get_one(Job, job_id).documents[1].id
    store.finish_page(store.claim_page(page_id), _ok())
    store.fail_document(bad_document_id, UnreadableDocument("not a PDF inside"))
    with sessions() as session:
        job = session.get_one(Job, job_id)
        assert [d.status for d in job.documents] == ["done", "failed"]
        assert job.documents[1].error_code == "unreadable"
        assert job.status == "partial"


def test_a_job_carries_its_own_settings_to_any_worker(make_settings: Callable[..., Settings]) -> None:
    host = make_settings(render_dpi=200, engines=["tesseract"])
    job = host.model_copy(update={"render_dpi": 300, "prompt_mode": "text_only"}).result_settings()
    on_worker = host.for_job(job | {"unrelated": 1})
    assert (on_worker.render_dpi, on_worker.prompt_mode) == (300, "text_only")
    assert on_worker.database_url == host.database_url and host.render_dpi == 200
    assert on_worker.result_key() != host.result_key()


def test_a_jobs_model_picks_its_own_vllm_server(make_settings: Callable[..., Settings]) -> None:
    host = make_settings(vllm_url="http://main:8000", vllm_model_urls={"qwen2-vl-2b": "http://gpu2:8011"})
    assert host.vllm_server_url() == "http://main:8000"  # dots.ocr has no entry of its own
    assert host.for_job({"vllm_model": "qwen2-vl-2b"}).vllm_server_url() == "http://gpu2:8011"
