"""Damaged PDFs give up page by page: what MuPDF can draw is read, and what was lost is said.

A truncated file is repaired and read; a page whose content stream is garbage keeps what was
drawn and carries a ``damaged_source`` warning, and its document ends ``partial`` listing the
pages, never a silent ``done``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rapidfuzz.distance import Levenshtein

from ocrq.api.cli import cli
from tests.conftest import CORPUS
from tests.factories import make_text_pdf, make_truncated
from tests.pdf_layers import replace_page_content

GARBAGE = b"BT /F1 12 Tf 72 72 Td (Hi) Tj ET q \x00\x01garbage ]]]] <<<< (((( Tj BI ID \xff\xfe EI Q" + bytes(
    range(256)
)
PAGES = [f"Page {word} of the contract keeps its text" for word in ("one", "two", "three", "four", "five")]


def _submit(inputs: Path, out: Path, **env: str) -> dict[str, dict]:
    env = {"OCRQ_DATABASE_URL": f"sqlite:///{out.parent / 'ocrq.db'}", "OCRQ_ENGINES": "tesseract"} | env
    result = CliRunner().invoke(
        cli, ["submit-batch", str(inputs), "--out", str(out), "--outputs", "json,md"], env=env
    )
    assert result.exit_code == 3, result.output  # some document is not fully done
    return {doc["path"]: doc for doc in json.loads((out / "batch.json").read_text())["documents"]}


def _pages(out: Path, name: str) -> list[dict]:
    return json.loads((out / f"{name}.json").read_text())["pages"]


def _warnings(page: dict) -> list[dict]:
    return [note for note in page["notes"] if note["warning"]]


@pytest.mark.skipif(not (CORPUS / "MANIFEST.md").exists(), reason="../shared/corpus is not here")
@pytest.mark.parametrize("name", ["nics-background-checks-2015-11", "2305.03393v1-pg9"])
def test_truncated_corpus_pdf_is_read_and_ends_partial(tmp_path: Path, name: str) -> None:
    (tmp_path / "in").mkdir()
    make_truncated(CORPUS / f"{name}.pdf", tmp_path / "in" / "cut.pdf", keep=0.55)
    documents = _submit(tmp_path / "in", tmp_path / "out")
    (page,) = _pages(tmp_path / "out", "cut.pdf")
    assert documents["cut.pdf"]["status"] == "partial"
    assert documents["cut.pdf"]["error"]["code"] == "damaged_source"
    assert "pages 1" in documents["cut.pdf"]["error"]["message"]
    assert page["status"] == "done" and _warnings(page)
    truth = (CORPUS / f"{name}.gt.txt").read_text(encoding="utf-8")
    assert Levenshtein.normalized_distance(" ".join(page["text"].split()), " ".join(truth.split())) < 0.1


@pytest.mark.parametrize("text_layer", ["auto", "off"])
def test_garbage_content_stream_flags_its_page_and_the_document_is_partial(
    tmp_path: Path, text_layer: str
) -> None:
    (tmp_path / "in").mkdir()
    whole = make_text_pdf(tmp_path / "whole.pdf", PAGES)
    replace_page_content(whole, tmp_path / "in" / "contract.pdf", 2, GARBAGE)
    documents = _submit(tmp_path / "in", tmp_path / "out", OCRQ_TEXT_LAYER=text_layer)
    pages = _pages(tmp_path / "out", "contract.pdf")
    document = documents["contract.pdf"]
    assert (document["status"], document["error"]["code"]) == ("partial", "damaged_source")
    assert "(pages 3)" in document["error"]["message"]
    assert [bool(_warnings(page)) for page in pages] == [False, False, True, False, False]
    assert "syntax error" in _warnings(pages[2])[0]["message"]
    markdown = (tmp_path / "out" / "contract.pdf.md").read_text()
    assert "<!-- page 3 -->\n\n<!-- warning: damaged_source: MuPDF drew this page with errors" in markdown
    assert all(page["status"] == "done" for page in pages)
    for page in pages[:2] + pages[3:]:
        assert "of the contract keeps its text" in " ".join(page["text"].split())
