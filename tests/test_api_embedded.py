"""The REST API on the embedded default: SQLite, no broker, jobs run by the API's background thread."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ocrq.settings import Settings
from tests.api_support import Api, make_key, running_api
from tests.factories import make_text_image, make_text_pdf
from tests.queue_harness import Processes, wait_for


@pytest.fixture
def api(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Api]:
    settings = make_settings(tesseract_langs="eng", api_upload_dir=tmp_path / "uploads")
    with running_api(settings) as api:
        yield api


@pytest.fixture
def documents(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = make_text_pdf(folder / "letter.pdf", ["Invoice seven for the archive", "Second page of letters"])
    scan = folder / "scan.png"
    make_text_image("Scanned receipt number nine").save(scan)
    fake = folder / "notes.pdf"
    fake.write_text("just some plain text notes, not a PDF at all\n")
    return {"pdf": pdf, "scan": scan, "fake": fake}


def test_upload_runs_in_the_background_and_results_download_in_every_format(
    api: Api, documents: dict[str, Path]
) -> None:
    accepted = api.upload(documents["pdf"], documents["scan"], documents["fake"])
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    assert accepted.headers["location"] == f"/v1/jobs/{job_id}"
    job = api.wait(job_id)
    assert job["status"] == "partial" and job["finished_at"]
    assert job["counts"]["pages"] == {"total": 3, "done": 3, "failed": 0, "degraded": 0}
    assert job["counts"]["engines"] == {"text_layer": 2, "tesseract": 1}  # the letter is born-digital
    (error,) = job["errors"]  # the sniffed content decides, not the .pdf name
    assert (error["path"], error["code"], error["status"]) == ("notes.pdf", "unsupported_type", "failed")
    assert "plain text" in error["message"]
    markdown = api.get(f"/v1/jobs/{job_id}/result", format="md")
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "invoice" in markdown.text.lower() and "receipt" in markdown.text.lower()
    assert "<!-- page 2 -->" in markdown.text
    _assert_json_formats(api, job_id)
    archive = zipfile.ZipFile(io.BytesIO(api.get(f"/v1/jobs/{job_id}/result", format="zip").content))
    assert {"batch.json", "letter.pdf.md", "letter.pdf.json", "scan.png.md", "notes.pdf.json"} <= set(
        archive.namelist()
    )
    assert json.loads(archive.read("batch.json"))["job_id"] == job_id


def _assert_json_formats(api: Api, job_id: int) -> None:
    whole = api.get(f"/v1/jobs/{job_id}/result", format="json").json()
    assert whole["job_id"] == job_id and len(whole["documents"]) == 3
    letter = next(d for d in whole["documents"] if d["path"] == "letter.pdf")
    assert [p["status"] for p in letter["pages"]] == ["done", "done"]
    lines = api.get(f"/v1/jobs/{job_id}/result", format="jsonl").text.splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["letter.pdf", "scan.png", "notes.pdf"]


def test_documents_and_pages_carry_text_markdown_cells_and_timings(
    api: Api, documents: dict[str, Path]
) -> None:
    job_id = api.upload(documents["pdf"]).json()["id"]
    api.wait(job_id)
    listing = api.get(f"/v1/jobs/{job_id}/documents").json()
    assert listing["count"] == 1
    (document,) = listing["data"]
    assert (document["type"], document["pages"], document["status"]) == ("pdf", 2, "done")
    assert "source" not in document  # the server's own path stays on the server
    assert api.get(document["links"]["self"]).json()["id"] == document["id"]
    page = api.get(f"/v1/documents/{document['id']}/pages/2").json()
    assert (page["number"], page["index"], page["engine"]) == (2, 1, "text_layer")
    assert page["notes"][0]["code"] == "text_layer_used"  # why the page was not OCRed
    assert "second" in page["text"].lower() and page["markdown"]
    assert page["cells"] and page["timings"]["ocr_ms"] > 0
    missing = api.get(f"/v1/documents/{document['id']}/pages/3")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_not_found"


def test_long_poll_returns_as_soon_as_the_job_ends(api: Api, documents: dict[str, Path]) -> None:
    job_id = api.upload(documents["scan"]).json()["id"]
    started = time.monotonic()
    job = api.wait(job_id, seconds=50)
    elapsed = time.monotonic() - started
    assert job["status"] == "done"  # it waited: a plain GET right after submitting sees it queued
    assert elapsed < 20, f"long-poll held the request {elapsed:.1f} s after the job ended"


def test_results_of_an_unfinished_job_are_a_409_and_a_finished_job_cannot_be_cancelled(
    api: Api, documents: dict[str, Path]
) -> None:
    job_id = api.upload(documents["pdf"]).json()["id"]
    early = api.get(f"/v1/jobs/{job_id}/result", format="md")
    if early.status_code != 200:  # the job may just have finished on a fast machine
        assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_finished"
    api.wait(job_id)
    cancel = api.client.delete(f"/v1/jobs/{job_id}", headers=api.headers)
    assert cancel.status_code == 409 and cancel.json()["error"]["code"] == "job_finished"
    unknown = api.client.delete("/v1/jobs/999999", headers=api.headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "resource_not_found"


def test_jobs_list_is_paginated_newest_first_and_filters_by_status(
    api: Api, documents: dict[str, Path]
) -> None:
    ids = [api.upload(documents["scan"]).json()["id"] for _ in range(3)]
    for job_id in ids:
        api.wait(job_id)
    page = api.get("/v1/jobs", limit=2, offset=0).json()
    assert page["count"] == 3 and [j["id"] for j in page["data"]] == [ids[2], ids[1]]
    assert [j["id"] for j in api.get("/v1/jobs", limit=2, offset=2).json()["data"]] == [ids[0]]
    assert api.get("/v1/jobs", status="done").json()["count"] == 3
    assert api.get("/v1/jobs", status="failed").json()["data"] == []
    assert page["data"][0]["counts"]["pages"]["done"] == 1


def test_health_readiness_and_metrics(api: Api, documents: dict[str, Path]) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}
    api.wait(api.upload(documents["pdf"], documents["fake"]).json()["id"])
    text = api.client.get("/metrics").text
    assert 'ocrq_jobs{status="partial"} 1.0' in text
    assert 'ocrq_pages{status="done"} 2.0' in text
    assert 'ocrq_documents{status="failed"} 1.0' in text
    assert 'ocrq_page_ocr_seconds_count{engine="text_layer"} 2.0' in text
    assert 'ocrq_page_ocr_seconds_bucket{engine="text_layer",le="+Inf"} 2.0' in text
    assert "ocrq_page_fallbacks_total 0.0" in text
    assert 'ocrq_queue_depth{queue="embedded"} 0.0' in text


def test_unknown_routes_and_bad_input_use_the_one_error_shape(api: Api) -> None:
    for response in (
        api.get("/v1/nowhere"),
        api.get("/v1/jobs/0"),
        api.get("/v1/jobs", limit=10_000),
        api.client.post("/v1/jobs", content=b"x", headers=api.headers | {"Content-Type": "text/plain"}),
        api.client.post(
            "/v1/jobs", content=b"{not json", headers=api.headers | {"Content-Type": "application/json"}
        ),
    ):
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
        assert response.status_code in (404, 415, 422) and "Traceback" not in response.text
    assert api.get("/v1/nowhere").json()["error"]["code"] == "resource_not_found"


def test_bad_options_are_refused_before_any_job_exists(api: Api, documents: dict[str, Path]) -> None:
    response = api.upload(documents["scan"], options={"dpi": 5, "engines": ["abbyy"]})
    assert response.status_code == 422
    locations = {tuple(d["loc"]) for d in response.json()["error"]["details"]}
    assert ("body", "options", "dpi") in locations
    no_secret = api.upload(documents["scan"], options={"callback_url": "http://127.0.0.1:9/hook"})
    assert no_secret.status_code == 422 and "WEBHOOK_SECRET" in no_secret.json()["error"]["message"]
    assert api.get("/v1/jobs").json()["count"] == 0
    assert not any((api.settings.api_upload_dir).rglob("scan.png"))  # refused uploads are removed


def test_job_options_reach_the_job(api: Api, documents: dict[str, Path]) -> None:
    job_id = api.upload(documents["scan"], options={"dpi": 150, "priority": 9, "force": True}).json()["id"]
    job = api.wait(job_id)
    assert job["settings"]["render_dpi"] == 150 and job["settings"]["reuse_results"] is False
    assert job["settings"]["api_options"]["priority"] == 9


def test_the_api_process_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from ocrq.api.rest.app import create_app\n"
        "from ocrq.settings import build_settings\n"
        f"create_app(build_settings(database_url='sqlite:///{tmp_path / 'x.db'}'))\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path.cwd())
    assert result.returncode == 0, result.stderr


def test_ocrq_api_serves_a_single_box(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """The real command: uvicorn in its own process, SQLite, no broker, OCR in its background thread."""
    settings = make_settings(tesseract_langs="eng")
    key = make_key(settings)
    env = {
        "OCRQ_DATABASE_URL": settings.database_url,
        "OCRQ_ENGINES": "tesseract",
        "OCRQ_TESSERACT_LANGS": "eng",
        "OCRQ_API_UPLOAD_DIR": str(tmp_path / "uploads"),
    }
    (tmp_path / "logs").mkdir()
    processes, port = Processes(env, tmp_path / "logs"), _free_port()
    scan = tmp_path / "scan.png"
    make_text_image("Served by a real process").save(scan)
    base = f"http://127.0.0.1:{port}"
    try:
        processes.start("api", "--port", str(port), name="api")
        wait_for(lambda: _answers(f"{base}/healthz"), 30, "ocrq api to listen")
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=90) as client:
            job_id = client.post("/v1/jobs", files={"files": ("scan.png", scan.read_bytes())}).json()["id"]
            assert client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()["status"] == "done"
            result = client.get(f"/v1/jobs/{job_id}/result", params={"format": "md"})
            assert "real process" in result.text.lower()
            assert "server" not in result.headers and result.headers["x-content-type-options"] == "nosniff"
    finally:
        processes.stop_all()
    log = (tmp_path / "logs" / "api.log").read_text()
    assert '"GET /healthz HTTP/1.1" 200' in log and "Logging error" not in log  # access lines format


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
