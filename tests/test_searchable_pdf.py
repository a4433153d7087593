"""The searchable PDF, end to end: Tesseract and a dots.ocr-style answer, read back by MuPDF,
poppler and qpdf, on plain, ``/Rotate`` 90 and shifted-MediaBox pages."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pikepdf
import pymupdf
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from ocrq.settings import Settings, build_settings
from ocrq.worker.batch import BatchRequest, run_embedded_batch
from tests.factories import make_text_pdf
from tests.fault_server import Step, completion, request_image, running_fault_server
from tests.scans import ENGLISH, RUSSIAN, SERIF, make_scan_pdf, scan_jpeg

MAX_CER = 0.01
BOX_TOLERANCE_PX = 8
"""A glyph box is the font's, not the ink's: ascenders and descenders may stand a little outside."""


@pytest.fixture(scope="module")
def tesseract_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One batch over every geometry, all formats written."""
    root = tmp_path_factory.mktemp("scans")
    inbox = root / "in"
    inbox.mkdir()
    make_scan_pdf(inbox / "plain.pdf", [RUSSIAN, ENGLISH])
    make_scan_pdf(inbox / "rotated.pdf", [RUSSIAN[:2] + ENGLISH[:1]], geometry="rotate90")
    make_scan_pdf(inbox / "origin.pdf", [ENGLISH[:2] + RUSSIAN[:1]], geometry="origin")
    make_scan_pdf(inbox / "sideways.pdf", [ENGLISH[:1] + RUSSIAN[:1]], geometry="sideways_left")
    (inbox / "photo.jpg").write_bytes(scan_jpeg(ENGLISH))
    settings = _settings(root, outputs=["md", "json", "txt", "pdf", "alto"])
    run_embedded_batch(settings, BatchRequest([inbox], root / "out"))
    return root / "out"


def _settings(root: Path, **overrides: Any) -> Settings:
    defaults: dict[str, Any] = {
        "database_url": f"sqlite:///{root / 'ocrq.db'}",
        "engines": ["tesseract"],
        "tesseract_langs": "rus+eng",
        "page_workers": 1,
    }
    return build_settings(**(defaults | overrides))


@pytest.mark.parametrize("name", ["plain.pdf", "rotated.pdf", "origin.pdf", "photo.jpg"])
def test_extracted_text_is_the_runs_text(tesseract_run: Path, name: str) -> None:
    expected = _squeeze((tesseract_run / f"{name}.txt").read_text())
    assert len(expected) > 100  # the run really read the page
    pdf = tesseract_run / f"{name}.pdf"
    for extracted in (_mupdf_text(pdf), _pdftotext(pdf)):
        assert Levenshtein.normalized_distance(_squeeze(extracted), expected) <= MAX_CER


def test_russian_and_english_come_back_as_unicode(tesseract_run: Path) -> None:
    text = _pdftotext(tesseract_run / "plain.pdf.pdf")
    assert "французских" in text and "quick brown fox" in text
    assert _pdftotext(tesseract_run / "plain.pdf.pdf").count("\f") == 2  # one page each


def test_a_sideways_scan_gets_its_words_turned_with_the_text(tesseract_run: Path) -> None:
    """Tesseract reads a page scanned sideways (no /Rotate to help); the layer's words follow the text."""
    expected = (tesseract_run / "sideways.pdf.txt").read_text().split()
    assert "quick" in expected and "французских" in expected
    with pymupdf.open(tesseract_run / "sideways.pdf.pdf") as document:
        words = [w[4] for w in document[0].get_text("words")]
        heights = [w[3] - w[1] for w in document[0].get_text("words") if len(w[4]) > 3]
    assert sorted(words) == sorted(expected)
    assert min(heights) > 20  # upright boxes would be one line high: these run up the page


@pytest.mark.parametrize("name", ["plain.pdf", "rotated.pdf", "origin.pdf", "sideways.pdf", "photo.jpg"])
def test_every_word_lies_inside_its_cell(tesseract_run: Path, name: str) -> None:
    pages = json.loads((tesseract_run / f"{name}.json").read_text())["pages"]
    with pymupdf.open(tesseract_run / f"{name}.pdf") as document:
        for page, record in zip(document, pages, strict=True):
            words = _words_in_ocr_pixels(page, record["width"])
            assert len(words) >= 20
            for box, text in words:
                assert _inside_some_cell(box, record["cells"]), f"{text!r} at {box} is outside every cell"


@pytest.mark.parametrize("name", ["plain.pdf", "rotated.pdf", "origin.pdf"])
def test_the_layer_is_invisible_and_the_page_unchanged(tesseract_run: Path, name: str) -> None:
    source = tesseract_run.parent / "in" / name
    with pymupdf.open(source) as before, pymupdf.open(tesseract_run / f"{name}.pdf") as after:
        assert [p.rect for p in before] == [p.rect for p in after]
        for old, new in zip(before, after, strict=True):
            assert _pixel_difference(old, new) == 0


@pytest.mark.parametrize("name", ["plain.pdf", "rotated.pdf", "origin.pdf", "photo.jpg"])
def test_opens_cleanly_in_qpdf_poppler_and_mupdf(tesseract_run: Path, name: str) -> None:
    pdf = tesseract_run / f"{name}.pdf"
    check = subprocess.run(["qpdf", "--check", str(pdf)], capture_output=True, text=True)
    assert check.returncode == 0 and "No syntax or stream encoding errors" in check.stdout, check.stdout
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True)
    assert info.returncode == 0 and info.stderr == ""
    assert subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stderr == ""
    pymupdf.TOOLS.mupdf_warnings()  # drop what earlier tests left
    with pymupdf.open(pdf) as document:
        for page in document:
            page.get_text()
            page.get_pixmap(dpi=30)
    assert pymupdf.TOOLS.mupdf_warnings() == ""


def test_a_jpeg_is_embedded_as_it_came(tesseract_run: Path) -> None:
    source = (tesseract_run.parent / "in" / "photo.jpg").read_bytes()
    with pikepdf.open(tesseract_run / "photo.jpg.pdf") as pdf:
        (image,) = pdf.pages[0].get_images().values()
        assert image.Filter == "/DCTDecode"
        assert image.read_raw_bytes() == source
        width_points = float(pdf.pages[0].MediaBox[2]) - float(pdf.pages[0].MediaBox[0])
    assert width_points == pytest.approx(1500 * 72 / 200)  # native size at the file's own 200 dpi


# --- a dots.ocr layout answer: blocks of Markdown, an HTML table and LaTeX --------------------------

PAGE_PX = (1400, 1000)
TITLE = (80, 60, 900, 120)
TEXT = (80, 150, 1300, 300)
TABLE = (80, 340, 900, 520)
FORMULA = (80, 560, 700, 640)
PICTURE = (1000, 560, 1300, 900)
DOTS_CELLS = [
    {"bbox": TITLE, "category": "Title", "text": "# Отчёт за **2024** год"},
    {"bbox": TEXT, "category": "Text", "text": "Выручка *выросла* на 12%.\nRevenue grew by **12%** in 2024."},
    {
        "bbox": TABLE,
        "category": "Table",
        "text": "<table><tr><th>Год</th><th>Revenue</th></tr><tr><td>2023</td><td>1 200</td></tr>"
        "<tr><td>2024</td><td>1 344</td></tr></table>",
    },
    {"bbox": FORMULA, "category": "Formula", "text": r"$$R = \frac{1344}{1200} \approx 1.12$$"},
    {"bbox": PICTURE, "category": "Picture"},
]


def _dots_page(path: Path) -> Path:
    """A page with text where the recorded answer says it is (the answer is what gets placed)."""
    image = Image.new("L", PAGE_PX, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(SERIF, 30)
    for cell in DOTS_CELLS[:4]:
        draw.text(cell["bbox"][:2], "текст text", font=font, fill=0)
    draw.rectangle(PICTURE, fill=120)
    image.save(path, dpi=(200, 200))
    return path


def _recorded_answer(request: dict[str, Any]) -> dict[str, Any]:
    """The cells in the frame of the image the model was sent, as dots.ocr answers."""
    width, height = request_image(request).size
    scale_x, scale_y = width / PAGE_PX[0], height / PAGE_PX[1]
    cells = [
        cell | {"bbox": [round(v * (scale_x, scale_y)[i % 2]) for i, v in enumerate(cell["bbox"])]}
        for cell in DOTS_CELLS
    ]
    return completion(json.dumps(cells, ensure_ascii=False))


def test_a_dots_layout_answer_becomes_a_searchable_pdf(tmp_path: Path) -> None:
    source = _dots_page(tmp_path / "report.png")
    with running_fault_server() as server:
        server.queue(Step(body=_recorded_answer))
        settings = _settings(
            tmp_path, engines=["vllm"], vllm_url=server.url, vllm_served_model_name="test-model",
            outputs=["txt", "pdf", "alto", "json"],
        )  # fmt: skip
        batch = run_embedded_batch(settings, BatchRequest([source], tmp_path / "out"))
    assert batch["counts"]["engines"] == {"vllm": 1}
    out = tmp_path / "out"
    text = (out / "report.png.txt").read_text()
    assert "Отчёт за 2024 год" in text and "**" not in text and "<td>" not in text
    assert "Год Revenue" in _squeeze(text) and "R = (1344)/(1200) ≈ 1.12" in text
    for extracted in (_mupdf_text(out / "report.png.pdf"), _pdftotext(out / "report.png.pdf")):
        assert Levenshtein.normalized_distance(_squeeze(extracted), _squeeze(text)) <= MAX_CER
    record = json.loads((out / "report.png.json").read_text())["pages"][0]
    with pymupdf.open(out / "report.png.pdf") as document:
        words = _words_in_ocr_pixels(document[0], record["width"])
    assert len(words) >= 20
    text_cells = [cell for cell in record["cells"] if cell["category"] != "Picture"]
    for box, word in words:
        assert _inside_some_cell(box, text_cells), f"{word!r} at {box} is outside every cell"
        assert not _inside_some_cell(box, [record["cells"][-1]], tolerance=0)  # nothing on the picture


# --- helpers -------------------------------------------------------------------------------------


def _words_in_ocr_pixels(page: pymupdf.Page, width_px: int) -> list[tuple[pymupdf.Rect, str]]:
    """MuPDF's word boxes (unrotated page space) in the frame the page was OCRed in."""
    scale = width_px / page.rect.width
    return [(pymupdf.Rect(w[:4]) * page.rotation_matrix * scale, w[4]) for w in page.get_text("words")]


def _inside_some_cell(
    box: pymupdf.Rect, cells: list[dict[str, Any]], tolerance: float = BOX_TOLERANCE_PX
) -> bool:
    for cell in cells:
        x1, y1, x2, y2 = cell["bbox"]
        if pymupdf.Rect(x1 - tolerance, y1 - tolerance, x2 + tolerance, y2 + tolerance).contains(box):
            return True
    return False


def _pixel_difference(old: pymupdf.Page, new: pymupdf.Page) -> int:
    """Largest channel difference between the two renders at 100 dpi."""
    renders = [Image.frombytes("RGB", (p.width, p.height), p.samples) for p in (
        old.get_pixmap(dpi=100, alpha=False), new.get_pixmap(dpi=100, alpha=False))]  # fmt: skip
    extrema = ImageChops.difference(*renders).getextrema()
    return max(high for _, high in extrema)


def _mupdf_text(pdf: Path) -> str:
    with pymupdf.open(pdf) as document:
        return "\f".join(page.get_text() for page in document)


def _pdftotext(pdf: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True
    ).stdout


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def test_a_born_digital_page_keeps_its_text_without_a_second_copy(tmp_path: Path) -> None:
    """Words the page already has are not laid again; a scanned part of the same page still is."""
    source = make_text_pdf(tmp_path / "typed.pdf", ["Typed words from the word processor"])
    with pymupdf.open(source) as document:  # a scanned note pasted below the typed line
        page = document[0]
        note = scan_jpeg(["Scanned note underneath"], size=(900, 120))
        page.insert_image(pymupdf.Rect(60, 500, 60 + 900 * 72 / 200, 500 + 120 * 72 / 200), stream=note)
        document.save(tmp_path / "mixed.pdf")
    settings = _settings(tmp_path, outputs=["txt", "pdf"], tesseract_langs="eng")
    run_embedded_batch(settings, BatchRequest([tmp_path / "mixed.pdf"], tmp_path / "out"))
    ocr_text = (tmp_path / "out" / "mixed.pdf.txt").read_text()
    assert "processor" in ocr_text and "underneath" in ocr_text
    with pymupdf.open(tmp_path / "out" / "mixed.pdf.pdf") as document:
        words = [w[4] for w in document[0].get_text("words")]
    assert words.count("processor") == 1  # the page's own, not ours again
    assert words.count("underneath") == 1  # ours: the scanned note had no text
