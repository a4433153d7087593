"""Turned pages read as well as upright ones: OSD turns big pages, four tries settle short ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tesserocr
from PIL import Image
from rapidfuzz.distance import Levenshtein

from ocrq.schemas import DocumentType, LayoutCell, PageTask
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.engines.tessdata import require_languages
from ocrq.worker.engines.tesseract import TesseractEngine
from ocrq.worker.engines.tesseract_orientation import cells_turned_back, turned
from tests.conftest import CORPUS
from tests.factories import make_text_image

SCAN = CORPUS / "ru-debian-faq-p10-scan.png"
LIMITS = RenderLimits(dpi=200, max_page_pixels=40_000_000, max_source_pixels=200_000_000, max_pages=10)


@pytest.fixture(scope="module")
def engine() -> Iterator[TesseractEngine]:
    engine = TesseractEngine("rus+eng")
    yield engine
    engine.close()


def _cer(text: str, truth: str) -> float:
    ours, theirs = " ".join(text.split()), " ".join(truth.split())
    return Levenshtein.distance(ours, theirs) / len(theirs)


def _through_ocrq(path: Path, engine: TesseractEngine) -> str:
    with open_document(path, DocumentType.PNG, LIMITS) as document:
        return engine.recognize(document.render(0, "L"), PageTask()).text


def _engine_directly(path: Path) -> str:
    """The library ocrq links, on the same file, as ``tesseract FILE - --psm 1`` would run it."""
    tessdata = require_languages("rus+eng", None, True)
    with tesserocr.PyTessBaseAPI(path=f"{tessdata}/", lang="rus+eng", psm=tesserocr.PSM.AUTO_OSD) as api:
        api.SetImageFile(str(path))
        return api.GetUTF8Text()


@pytest.mark.slow
@pytest.mark.skipif(not SCAN.exists(), reason="../shared/corpus is not here")
def test_a_scan_turned_90_reads_as_well_as_upright_and_no_worse_than_the_engine_directly(
    tmp_path: Path, engine: TesseractEngine
) -> None:
    truth = SCAN.with_name("ru-debian-faq-p10-scan.gt.txt").read_text(encoding="utf-8")
    Image.open(SCAN).rotate(90, expand=True).save(tmp_path / "turned.png")
    upright = _cer(_through_ocrq(SCAN, engine), truth)
    sideways = _cer(_through_ocrq(tmp_path / "turned.png", engine), truth)
    direct = _cer(_engine_directly(tmp_path / "turned.png"), truth)
    print(f"\nCER upright {upright:.2%}, turned through ocrq {sideways:.2%}, engine directly {direct:.2%}")
    assert sideways <= upright + 0.001
    assert sideways <= direct + 0.001


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_one_line_page_in_any_turn_is_read(engine: TesseractEngine, turn: int) -> None:
    """Too little text for OSD to be sure: the four turns are tried and the most confident wins."""
    page = make_text_image("Invoice number seven", (1200, 300), mode="L").rotate(turn, expand=True)
    page.info["dpi"] = (200, 200)
    result = engine.recognize(page, PageTask())
    assert "Invoice number seven" in result.text
    words = [word for cell in result.cells for line in cell.lines for word in line.words]
    assert all(
        0 <= w.bbox[0] < w.bbox[2] <= page.width and 0 <= w.bbox[1] < w.bbox[3] <= page.height for w in words
    )
    angles = {line.angle for cell in result.cells for line in cell.lines}
    assert angles == {turn}  # the text's turn in the page as given


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_boxes_on_the_upright_copy_map_back_onto_the_page(turn: int) -> None:
    page = Image.new("L", (300, 200), "white")
    page.paste(0, (10, 20, 40, 30))  # a dark mark
    upright = turned(page, turn)
    x0, y0, x1, y1 = Image.eval(upright, lambda value: 255 - value).getbbox()
    (back,) = cells_turned_back([LayoutCell((x0, y0, x1, y1), "Text", "mark")], turn, page.size)
    assert back.bbox == (10, 20, 40, 30)
