"""`submit-batch` end to end on the embedded default: real files, real Tesseract, real databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from ocrq.api.cli import cli
from ocrq.db.models import Attempt, Document, Job, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.jobs.store import JobStore
from ocrq.settings import Settings
from ocrq.worker.batch import BatchRequest, open_database, run_embedded_batch
from ocrq.worker.documents.ingest import create_job, ingest_document
from ocrq.worker.documents.render import RenderLimits
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.pipeline import PagePipeline
from tests.factories import make_encrypted_pdf, make_text_image, make_text_pdf, make_truncated

ENGLISH = "Invoice number seven for archive boxes"
RUSSIAN = "Счёт номер семь за архивные коробки"


def _good_folder(root: Path) -> Path:
    (root / "nested").mkdir(parents=True)
    make_text_pdf(root / "letters.pdf", [ENGLISH, RUSSIAN])
    make_text_image(RUSSIAN).save(root / "nested" / "scan.png")
    return root


def _bad_folder(root: Path) -> Path:
    _good_folder(root)
    make_encrypted_pdf(root / "locked.pdf")
    make_truncated(root / "letters.pdf", root / "broken.pdf")
    (root / "zero.pdf").write_bytes(b"")
    (root / "notes.pdf").write_text("just text, whatever the name says\n")
    return root


def _submit(settings: Settings, *args: str) -> Result:
    env = {"OCRQ_DATABASE_URL": settings.database_url, "OCRQ_ENGINES": "tesseract"}
    return CliRunner().invoke(cli, ["submit-batch", *args], env=env, catch_exceptions=False)


def _batch(out: Path) -> dict[str, dict]:
    return {doc["path"]: doc for doc in json.loads((out / "batch.json").read_text())["documents"]}


def test_a_clean_folder_is_done_with_markdown_json_and_exit_0(tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "out"
    result = _submit(settings, str(_good_folder(tmp_path / "in")), "--out", str(out))
    assert result.exit_code == 0, result.output
    documents = _batch(out)
    assert set(documents) == {"letters.pdf", "nested/scan.png"}
    assert all(doc["status"] == "done" and doc["error"] is None for doc in documents.values())
    markdown = (out / "letters.pdf.md").read_text().lower()
    assert "invoice" in markdown and "архивные" in markdown
    pages = json.loads((out / "nested" / "scan.png.json").read_text())["pages"]
    assert pages[0]["engine"] == "tesseract" and pages[0]["cells"]
    assert pages[0]["timings"]["ocr_ms"] > 0 and pages[0]["timings"]["finished_at"]


def test_bad_documents_get_codes_and_the_batch_goes_on(tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "out"
    result = _submit(settings, str(_bad_folder(tmp_path / "in")), "--out", str(out))
    assert result.exit_code == 3, result.output
    documents = _batch(out)
    codes = {path: (doc["error"] or {}).get("code") for path, doc in documents.items()}
    assert codes == {
        "letters.pdf": None,
        "nested/scan.png": None,
        "locked.pdf": "encrypted",
        "broken.pdf": "damaged_source",  # a truncated PDF: read page by page, flagged (issue 11)
        "zero.pdf": "empty",
        "notes.pdf": "unsupported_type",
    }
    assert documents["letters.pdf"]["status"] == "done"
    assert documents["broken.pdf"]["status"] == "partial"
    assert documents["locked.pdf"]["status"] == "failed"
    assert "locked.pdf" in result.output  # failed documents are listed in the summary
    assert json.loads((out / "locked.pdf.json").read_text())["error"]["code"] == "encrypted"


def test_rerun_skips_done_documents_unless_forced(tmp_path: Path, settings: Settings) -> None:
    folder, out = _good_folder(tmp_path / "in"), tmp_path / "out"
    assert _submit(settings, str(folder), "--out", str(out)).exit_code == 0
    make_text_image(ENGLISH).save(folder / "added.png")
    assert _submit(settings, str(folder), "--out", str(out)).exit_code == 0
    assert _submit(settings, str(folder), "--out", str(out), "--force").exit_code == 0
    sessions = make_session_factory(make_engine(settings.database_url))
    with sessions() as session:
        second, third = session.scalars(select(Job).order_by(Job.id).offset(1)).all()
        assert _reused_by_document(second) == {
            "letters.pdf": [True, True],
            "nested/scan.png": [True],
            "added.png": [False],
        }
        assert all(not page.reused for doc in third.documents for page in doc.pages)
        assert _attempts(session, second) == 1 and _attempts(session, third) == 4
    assert "invoice" in (out / "letters.pdf.md").read_text().lower()


def test_an_interrupted_batch_resumes_where_it_stopped(tmp_path: Path, settings: Settings) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_text_pdf(folder / "three.pdf", [ENGLISH, RUSSIAN, ENGLISH])
    _, sessions = open_database(settings)
    job_id = create_job(sessions, walk_sources([folder]), settings)
    document_id = sessions().scalar(select(Document.id).where(Document.job_id == job_id))
    first_page, *_rest = ingest_document(sessions, settings, document_id)
    pipeline = PagePipeline(JobStore(sessions), build_chain(settings), RenderLimits.from_settings(settings))
    pipeline.process(first_page)  # ...and the process dies here
    pipeline.close()
    assert _submit(settings, str(folder), "--out", str(tmp_path / "out")).exit_code == 0
    with sessions() as session:
        resumed = session.scalars(select(Job).order_by(Job.id.desc())).first()
        assert _reused_by_document(resumed) == {"three.pdf": [True, False, False]}
        assert _attempts(session, resumed) == 2


def test_usage_and_system_errors_have_their_exit_codes(tmp_path: Path, settings: Settings) -> None:
    assert _submit(settings, str(tmp_path / "missing")).exit_code == 2
    folder = _good_folder(tmp_path / "in")
    env = {"OCRQ_DATABASE_URL": settings.database_url, "OCRQ_ENGINES": "vllm"}
    result = CliRunner().invoke(cli, ["submit-batch", str(folder)], env=env)
    assert result.exit_code == 1
    assert "no_engine" in result.output
    env = {"OCRQ_DATABASE_URL": settings.database_url, "OCRQ_ENGINES": "nonsense"}
    assert CliRunner().invoke(cli, ["submit-batch", str(folder)], env=env).exit_code == 2


def test_results_and_timings_land_in_the_database(
    tmp_path: Path, database_url: str, make_settings: Callable[..., Settings]
) -> None:
    from ocrq.db.migrations import upgrade

    upgrade(database_url)
    settings = make_settings(database_url=database_url, text_layer="off")  # OCR timings, not the layer's
    folder = _bad_folder(tmp_path / "in")
    batch = run_embedded_batch(settings, BatchRequest([folder], tmp_path / "out"))
    assert batch["counts"]["documents"] == {"done": 2, "partial": 1, "failed": 3}  # partial: truncated
    sessions = make_session_factory(make_engine(database_url))
    with sessions() as session:
        whole = select(Document.id).where(Document.relpath != "broken.pdf")
        pages = session.scalars(select(Page).where(Page.status == "done", Page.document_id.in_(whole))).all()
        assert len(pages) == 3
        for page in pages:
            assert page.engine == "tesseract" and page.text and page.cells
            assert page.queued_at <= page.started_at <= page.finished_at
            assert page.render_ms > 0 and page.ocr_ms > 0 and page.width > 0
        ok = select(func.count()).select_from(Attempt).join(Page).where(Attempt.outcome == "ok")
        assert session.scalar(ok.where(Page.document_id.in_(whole))) == 3
        scan = session.scalars(select(Document).where(Document.relpath == "nested/scan.png")).one()
        assert (scan.detected_type, scan.page_count, len(scan.sha256)) == ("png", 1, 64)


def _reused_by_document(job: Job) -> dict[str, list[bool]]:
    return {doc.relpath: [page.reused for page in doc.pages] for doc in job.documents}


def _attempts(session, job: Job) -> int:
    return session.scalar(
        select(func.count()).select_from(Attempt).join(Page).join(Document).where(Document.job_id == job.id)
    )


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run from an empty folder so a developer's .env or ocrq.db never leaks into a test."""
    monkeypatch.chdir(tmp_path)
