"""The text-layer engine and its gate: exact text from born-digital pages, OCR for the rest.

Documents come from the shared corpus (born-digital PDFs with their layer as ground truth,
scans with somebody's invisible OCR layer) and from code (mojibake, mixed, rotated pages).
Jobs run through ``submit-batch`` with real Tesseract, as a user would run them.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pymupdf
import pytest
from click.testing import CliRunner
from PIL import Image
from rapidfuzz.distance import Levenshtein
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from ocrq.api.cli import cli
from ocrq.db.models import Attempt, Page
from ocrq.settings import Settings
from ocrq.worker.engines.text_layer import read_text_layer
from ocrq.worker.engines.text_layer_gate import judge_layer
from tests.api_support import running_api
from tests.conftest import CORPUS
from tests.pdf_layers import add_scan_page, add_text_page, make_mojibake_pdf, save

BORN_DIGITAL = [
    "crazyones.pdf",
    "pdflatex-4-pages.pdf",
    "multicolumn.pdf",
    "google-doc-document.pdf",
    "nics-background-checks-2015-11.pdf",
    "2305.03393v1-pg9.pdf",
    "debian-faq.ru.pdf",
    "GeoTopo-komprimiert.pdf",
]
EARLIER_OCR = ["Seige_of_Vicksburg_Sample_OCR.pdf", "fmc-agreement-indirect-rotation.pdf"]
RUSSIAN = ["Привет, мир! Это проверка.", "Счёт номер семь оплачен.", "Документ набран старым шрифтом."]
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "MANIFEST.md").exists(), reason="../shared/corpus is not here"
)


def _submit(inputs: Path, out: Path, **env: str) -> dict[str, dict]:
    env = {"OCRQ_DATABASE_URL": f"sqlite:///{out.parent / 'ocrq.db'}", "OCRQ_ENGINES": "tesseract"} | env
    result = CliRunner().invoke(cli, ["submit-batch", str(inputs), "--out", str(out)], env=env)
    assert result.exit_code in (0, 3), result.output
    return {doc["path"]: doc for doc in json.loads((out / "batch.json").read_text())["documents"]}


def _pages(out: Path, name: str) -> list[dict]:
    return json.loads((out / f"{name}.json").read_text())["pages"]


def _note_codes(page: dict) -> list[str]:
    return [note["code"] for note in page["notes"]]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], Path]:
    work = tmp_path_factory.mktemp("layers")
    (work / "in").mkdir()
    for name in BORN_DIGITAL + EARLIER_OCR:
        (work / "in" / name).symlink_to(CORPUS / name)
    return _submit(work / "in", work / "out", OCRQ_OUTPUTS="json,txt"), work / "out"


@needs_corpus
@pytest.mark.slow
@pytest.mark.parametrize("name", BORN_DIGITAL)
def test_born_digital_pdfs_are_read_exactly_from_their_layer_without_rendering(
    corpus_run: tuple[dict[str, dict], Path], name: str
) -> None:
    documents, out = corpus_run
    assert documents[name]["status"] == "done", documents[name]["error"]
    pages = _pages(out, name)
    assert {page["engine"] for page in pages} == {"text_layer"}
    assert all(page["timings"]["render_ms"] is None for page in pages)  # the render path was not taken
    truth = (CORPUS / name.replace(".pdf", ".gt.txt")).read_text(encoding="utf-8").split("\f")
    ours, theirs = " ".join(page["text"] for page in pages).split(), " ".join(truth).split()
    assert _word_difference(ours, theirs) <= 0.005
    assert Levenshtein.normalized_distance(" ".join(ours), " ".join(theirs)) <= 0.005


def _word_difference(ours: list[str], theirs: list[str]) -> float:
    """Words missing or extra, order-free, over the true word count."""
    mine, true = Counter(ours), Counter(theirs)
    return (sum((mine - true).values()) + sum((true - mine).values())) / max(1, len(theirs))


@needs_corpus
@pytest.mark.slow
@pytest.mark.parametrize("name", EARLIER_OCR)
def test_scans_with_an_invisible_earlier_ocr_layer_are_ocred_again(
    corpus_run: tuple[dict[str, dict], Path], name: str
) -> None:
    documents, out = corpus_run
    pages = _pages(out, name)
    assert documents[name]["status"] == "done"
    assert {page["engine"] for page in pages} == {"tesseract"}
    for page in pages:
        assert page["notes"][0]["code"] == "text_layer_rejected"
        assert page["notes"][0]["message"].startswith("invisible_text")
        assert page["timings"]["render_ms"] is not None
        assert len(page["text"].split()) > 10


@needs_corpus
@pytest.mark.slow
def test_the_gate_decision_is_an_attempt(corpus_run: tuple[dict[str, dict], Path]) -> None:
    _, out = corpus_run
    with Session(create_engine(f"sqlite:///{out.parent / 'ocrq.db'}")) as session:
        rows = session.execute(
            select(Attempt.engine, Attempt.outcome, Attempt.error_message).join(Page)
        ).all()
    decisions = Counter((engine, outcome) for engine, outcome, _ in rows)
    assert decisions[("text_layer", "rejected")] == 11  # 6 + 5 scanned pages
    assert decisions[("tesseract", "ok")] == 11
    assert decisions[("text_layer", "ok")] == 1 + 4 + 3 + 1 + 1 + 1 + 75 + 117


def test_mojibake_layer_is_rejected_and_the_page_ocred(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    path = make_mojibake_pdf(tmp_path / "in" / "cp1251.pdf", RUSSIAN)
    assert "Ïðèâåò" in pymupdf.open(path)[0].get_text()  # the trap is real: the layer is Latin-1
    documents = _submit(tmp_path / "in", tmp_path / "out")
    (page,) = _pages(tmp_path / "out", "cp1251.pdf")
    assert documents["cp1251.pdf"]["status"] == "done"
    assert page["engine"] == "tesseract"
    assert page["notes"][0]["message"].startswith("mojibake")
    assert "Привет" in page["text"] and "Ïðèâåò" not in page["text"]


def test_mixed_pdf_gets_the_right_engine_per_page(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    document = pymupdf.open()
    add_text_page(document, ["Born-digital page one", "with its own exact text layer"])
    add_scan_page(document, "Scanned invoice number seven")
    add_scan_page(document, "Another scanned page", hidden_text="Anoter scaned paeg")
    add_text_page(document, ["Последняя страница набрана", "и читается из файла"])
    save(document, tmp_path / "in" / "mixed.pdf")
    _submit(tmp_path / "in", tmp_path / "out")
    pages = _pages(tmp_path / "out", "mixed.pdf")
    assert [page["engine"] for page in pages] == ["text_layer", "tesseract", "tesseract", "text_layer"]
    assert [page["notes"][0]["message"].split(":")[0] for page in pages] == [
        "born_digital",
        "no_text",
        "invisible_text",
        "born_digital",
    ]
    assert "invoice number seven" in pages[1]["text"].lower()
    assert "Another scanned" in pages[2]["text"]
    assert pages[3]["text"].split() == ["Последняя", "страница", "набрана", "и", "читается", "из", "файла"]


def test_rotated_one_line_pages_are_read_exactly(tmp_path: Path) -> None:
    """Twenty short pages turned by /Rotate: too little text for OSD, exact from the layer."""
    (tmp_path / "in").mkdir()
    document = pymupdf.open()
    lines = [f"Line {number} закрыт {number * 7}" for number in range(20)]
    for number, line in enumerate(lines):
        add_text_page(document, [line], rotate=(number % 4) * 90)
    save(document, tmp_path / "in" / "turned.pdf")
    _submit(tmp_path / "in", tmp_path / "out", OCRQ_OUTPUTS="json,pdf")
    pages = _pages(tmp_path / "out", "turned.pdf")
    assert [page["text"] for page in pages] == lines
    for number, page in enumerate(pages):
        turn = (number % 4) * 90
        assert (page["width"] > page["height"]) == (turn in (90, 270))
        (line,) = page["cells"][0]["lines"]
        assert line.get("angle", 0) == (360 - turn) % 360  # upright text turned clockwise with its page
    searchable = pymupdf.open(tmp_path / "out" / "turned.pdf.pdf")
    assert [page.get_text().strip() for page in searchable] == lines  # the layer is not written twice


def test_only_keeps_a_rejected_layer_with_its_reason(tmp_path: Path) -> None:
    document = pymupdf.open()
    add_scan_page(document, "Scanned page", hidden_text="Scanned paeg with earlier OCR")
    path = save(document, tmp_path / "scan.pdf")
    with pymupdf.open(path) as opened:
        rejected = read_text_layer(opened[0], 200 / 72)
        kept = read_text_layer(opened[0], 200 / 72, keep_rejected=True)
    assert rejected.result is None and rejected.verdict.code == "text_layer_rejected"
    assert kept.result is not None and kept.result.text == "Scanned paeg with earlier OCR"
    assert kept.result.notes[0].message.startswith("invisible_text")


def test_words_carry_boxes_in_page_pixels(tmp_path: Path) -> None:
    document = pymupdf.open()
    add_text_page(document, ["Exact words here"], size=20)
    path = save(document, tmp_path / "words.pdf")
    with pymupdf.open(path) as opened:
        reading = read_text_layer(opened[0], 2.0)
    assert reading.size == (1190, 1684)
    assert reading.result is not None
    (cell,) = reading.result.cells
    words = [word for line in cell.lines for word in line.words]
    assert [word.text for word in words] == ["Exact", "words", "here"]
    x0, y0, _, y1 = words[0].bbox
    assert 115 <= x0 <= 125 and 125 <= y1 <= 170 and y1 - y0 >= 30  # 60 pt, baseline at 80 pt, 20 pt type


def _doubtful_pages(path: Path) -> Path:
    """Page 1: a third of its layer invisible; page 2: typed text over a page-wide background image."""
    document = pymupdf.open()
    add_text_page(
        document, ["Quarterly report of the warehouse", "Inventory counted on Monday morning"], size=20
    )
    document[0].insert_text((60, 400), "Hidden words nobody can see here at all", fontsize=20, render_mode=3)
    lines = ["Minutes of the annual meeting", "The board approved the budget", "Members present signed below"]
    add_text_page(document, lines * 3, size=20)
    paper = io.BytesIO()
    Image.new("L", (60, 80), 235).save(paper, format="PNG")
    document[1].insert_image(document[1].rect, stream=paper.getvalue(), overlay=False)
    return save(document, path)


def test_a_doubtful_layer_is_checked_against_ocr(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _doubtful_pages(tmp_path / "in" / "doubt.pdf")
    _submit(tmp_path / "in", tmp_path / "out", OCRQ_TESSERACT_LANGS="eng")
    hidden, background = _pages(tmp_path / "out", "doubt.pdf")
    assert hidden["engine"] == "tesseract" and "Hidden" not in hidden["text"]
    assert hidden["notes"][0]["message"].startswith("disagrees_with_ocr")
    assert background["engine"] == "text_layer"
    assert "doubtful (over an image" in background["notes"][0]["message"]
    assert background["notes"][1]["code"] == "text_layer_checked"
    assert background["text"].split("\n")[:3] == [
        "Minutes of the annual meeting",
        "The board approved the budget",
        "Members present signed below",
    ]


def test_text_layer_off_on_the_command_line_ocrs_every_page(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    document = pymupdf.open()
    add_text_page(document, ["Typed page read by OCR on request"], size=24)
    save(document, tmp_path / "in" / "typed.pdf")
    env = {"OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'ocrq.db'}", "OCRQ_ENGINES": "tesseract"}
    args = ["submit-batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--text-layer", "off"]
    assert CliRunner().invoke(cli, args, env=env).exit_code == 0
    (page,) = _pages(tmp_path / "out", "typed.pdf")
    assert page["engine"] == "tesseract" and page["notes"] == []
    bad = CliRunner().invoke(cli, [*args[:-1], "sometimes"], env=env)
    assert bad.exit_code == 2 and "sometimes" in bad.output


def test_a_job_chooses_its_text_layer_through_the_api(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    document = pymupdf.open()
    add_text_page(document, ["Typed page for the API"], size=24)
    path = save(document, tmp_path / "typed.pdf")
    with running_api(make_settings(tesseract_langs="eng", api_upload_dir=tmp_path / "uploads")) as api:
        engines = {}
        for choice in ("auto", "off"):
            job = api.wait(api.upload(path, options={"text_layer": choice}).json()["id"])
            engines[choice] = job["counts"]["engines"]
        refused = api.upload(path, options={"text_layer": "never"})
    assert engines == {"auto": {"text_layer": 1}, "off": {"tesseract": 1}}
    assert refused.status_code == 422


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("\ue000\ue001\ue002 " * 12 + "and a few real words here", "unmapped_glyphs"),
        ("∑∫∂√≈≠≤≥ ←→↑↓ ■□▪▫ ◆◇○● " * 3 + "ok", "mostly_symbols"),
    ],
    ids=["private-use", "symbol-soup"],
)
def test_garbled_layers_are_rejected_with_their_reason(tmp_path: Path, text: str, reason: str) -> None:
    document = pymupdf.open()
    add_text_page(document, [text], size=12)
    path = save(document, tmp_path / "garbled.pdf", subset=False)
    with pymupdf.open(path) as opened:
        reading = read_text_layer(opened[0], 200 / 72)
    assert reading.result is None
    assert reading.verdict.message.startswith(reason), reading.verdict.message


@pytest.mark.parametrize(
    "text",
    ["\ufffd\ufffd\ufffd\ufffd " * 8 + "and a few real words", "(cid:12)(cid:7)(cid:33) " * 6 + "real words"],
)
def test_replacement_characters_and_cid_runs_are_rejected(text: str) -> None:
    """MuPDF itself writes U+FFFD for glyphs it cannot map (pdfminer-style producers write (cid:N))."""
    with pymupdf.open() as document:
        verdict = judge_layer(document.new_page(), text)
    assert (verdict.accepted, verdict.reason) == (False, "unmapped_glyphs")
