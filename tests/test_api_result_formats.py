"""Every result format over the REST API: per job, per document, and the layout picture per page."""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from ocrq.settings import Settings
from tests.api_support import Api, running_api
from tests.factories import make_text_pdf


@pytest.fixture
def finished(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[tuple[Api, int, int]]:
    """An API with one finished job of one two-page PDF: (api, job id, document id)."""
    settings = make_settings(tesseract_langs="eng", api_upload_dir=tmp_path / "uploads")
    pdf = make_text_pdf(tmp_path / "letter.pdf", ["Invoice seven for the archive", "Second page of letters"])
    with running_api(settings) as api:
        job_id = api.upload(pdf).json()["id"]
        api.wait(job_id)
        (document,) = api.get(f"/v1/jobs/{job_id}/documents").json()["data"]
        yield api, job_id, document["id"]


def test_a_document_downloads_in_every_format(finished: tuple[Api, int, int], tmp_path: Path) -> None:
    api, _, document_id = finished
    text = api.get(f"/v1/documents/{document_id}/result", format="txt")
    assert text.headers["content-type"].startswith("text/plain")
    assert "Invoice seven" in text.text and text.text.count("\f") == 1
    alto = api.get(f"/v1/documents/{document_id}/result", format="alto")
    assert alto.headers["content-type"] == "application/xml" and 'CONTENT="Invoice"' in alto.text
    pdf = api.get(f"/v1/documents/{document_id}/result", format="pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == 'attachment; filename="letter.pdf.pdf"'
    (tmp_path / "got.pdf").write_bytes(pdf.content)
    extracted = subprocess.run(["pdftotext", str(tmp_path / "got.pdf"), "-"], capture_output=True, text=True)
    assert "Invoice seven" in extracted.stdout
    assert api.get(f"/v1/documents/{document_id}/result", format="md").text.startswith("<!-- page 1 -->")
    assert api.get(f"/v1/documents/{document_id}/result", format="json").json()["id"] == document_id
    assert api.get(f"/v1/documents/{document_id}/result", format="docx").status_code == 422


def test_a_job_downloads_as_text_and_as_a_zip_of_chosen_formats(finished: tuple[Api, int, int]) -> None:
    api, job_id, _ = finished
    text = api.get(f"/v1/jobs/{job_id}/result", format="txt").text
    assert text.startswith("==> letter.pdf (done) <==\n") and "Second page" in text
    zipped = api.get(f"/v1/jobs/{job_id}/result", format="zip", outputs="pdf,alto,layout")
    names = set(zipfile.ZipFile(io.BytesIO(zipped.content)).namelist())
    assert names == {
        "batch.json", "letter.pdf.pdf", "letter.pdf.alto.xml",
        "letter.pdf.layout/page-0001.png", "letter.pdf.layout/page-0002.png",
    }  # fmt: skip
    refused = api.get(f"/v1/jobs/{job_id}/result", format="zip", outputs="pdf,epub")
    assert refused.status_code == 422 and "epub" in refused.json()["error"]["message"]


def test_the_layout_picture_of_a_page(finished: tuple[Api, int, int], tmp_path: Path) -> None:
    api, _, document_id = finished
    picture = api.get(f"/v1/documents/{document_id}/pages/1/layout.png")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(picture.content)) as image:
        assert image.mode == "P" and 900 <= max(image.size) <= 1100
    assert api.get(f"/v1/documents/{document_id}/pages/3/layout.png").status_code == 404
    for upload in (tmp_path / "uploads").rglob("letter.pdf"):
        upload.unlink()  # the source is gone: the picture cannot be drawn, and the API says why
    gone = api.get(f"/v1/documents/{document_id}/pages/1/layout.png")
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "output_failed"
    assert api.get(f"/v1/documents/{document_id}/result", format="pdf").status_code == 409
