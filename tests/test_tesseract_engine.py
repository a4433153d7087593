"""The Tesseract engine on real Tesseract: pages drawn here with Pillow, plus corpus scans when present."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from ocrq.errors import EngineUnavailable, InputError
from ocrq.schemas import LAYOUT_CATEGORIES, PageResult, PageTask, PromptMode
from ocrq.settings import Settings
from ocrq.worker.engines import tessdata
from ocrq.worker.engines.base import Engine
from ocrq.worker.engines.tessdata import candidate_dirs, find_tessdata, require_languages
from ocrq.worker.engines.tesseract import TesseractEngine, tesseract_available
from tests.conftest import CORPUS

FONT_PATH = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
ENGLISH = ("hello", "batch", "ocr")
RUSSIAN = ("привет", "распознавание", "текста")
LINE_HEIGHT = 70


def draw_page(lines: list[str], width: int = 1000) -> Image.Image:
    """White greyscale page with one 40 px DejaVu line per entry."""
    font = ImageFont.truetype(FONT_PATH, 40)
    page = Image.new("L", (width, 80 + LINE_HEIGHT * len(lines)), 255)
    draw = ImageDraw.Draw(page)
    for index, line in enumerate(lines):
        draw.text((40, 40 + LINE_HEIGHT * index), line, fill=0, font=font)
    return page


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def found(expected: tuple[str, ...], text: str) -> int:
    return len(set(expected) & words(text))


def assert_reads_both_languages(text: str) -> None:
    """At least two of three distinctive words per script, so one misread letter does not fail."""
    assert found(ENGLISH, text) >= 2, text
    assert found(RUSSIAN, text) >= 2, text


def assert_cells_inside(result: PageResult, size: tuple[int, int]) -> None:
    width, height = size
    for cell in result.cells:
        x1, y1, x2, y2 = cell.bbox
        assert cell.category in LAYOUT_CATEGORIES
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, (cell.bbox, size)


@pytest.fixture(scope="module")
def engine() -> Iterator[TesseractEngine]:
    engine = TesseractEngine("rus+eng", None, detect_orientation=True)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def two_lines() -> Image.Image:
    return draw_page(["Hello batch OCR", "Привет, распознавание текста"])


def eng_only_tessdata(root: Path) -> Path:
    """A tessdata directory holding only eng (linked from the system one), to exercise discovery."""
    directory = root / "tessdata"
    directory.mkdir()
    (directory / "eng.traineddata").symlink_to(find_tessdata() / "eng.traineddata")
    return directory


def test_engine_describes_itself(engine: TesseractEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.name == "tesseract"
    assert engine.image_mode == "L"
    assert engine.max_in_flight >= 1
    assert re.fullmatch(r"tesseract-5\.\d+\.\d+:rus\+eng", engine.model), engine.model


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_reads_latin_and_cyrillic(engine: TesseractEngine, two_lines: Image.Image, mode: str) -> None:
    result = engine.recognize(two_lines.convert(mode), PageTask())
    assert_reads_both_languages(result.text)
    assert_reads_both_languages(result.markdown)
    assert result.engine == "tesseract" and result.model == engine.model
    assert result.tokens_in is None and result.tokens_out is None
    assert result.ocr_ms > 0


def test_cells_are_layout_blocks_in_page_pixels(engine: TesseractEngine, two_lines: Image.Image) -> None:
    result = engine.recognize(two_lines, PageTask())
    assert result.cells
    assert_cells_inside(result, two_lines.size)
    assert all(cell.text for cell in result.cells)
    assert result.text == "\n\n".join(cell.text or "" for cell in result.cells)
    hello = next(cell for cell in result.cells if "hello" in words(cell.text or ""))
    assert hello.bbox[1] >= 40 and hello.bbox[3] <= 40 + LINE_HEIGHT  # where the first line was drawn


@pytest.mark.parametrize("angle", [90, 270])
def test_sideways_page_still_reads(engine: TesseractEngine, two_lines: Image.Image, angle: int) -> None:
    sideways = two_lines.rotate(angle, expand=True)
    result = engine.recognize(sideways, PageTask())
    assert_reads_both_languages(result.text)
    assert_cells_inside(result, sideways.size)
    for cell in result.cells:  # boxes stay in the sideways frame: text lines are tall, not wide
        x1, y1, x2, y2 = cell.bbox
        assert y2 - y1 > x2 - x1, cell


def test_blank_page_is_an_empty_result(engine: TesseractEngine) -> None:
    result = engine.recognize(Image.new("L", (800, 600), 255), PageTask())
    assert (result.text, result.markdown, result.cells) == ("", "", [])


def test_picture_block_has_no_text(engine: TesseractEngine) -> None:
    page = draw_page([f"Some flowing paragraph text here number {n}" for n in range(6)])
    framed = Image.new("L", (page.width, page.height + 450), 255)
    framed.paste(page, (0, 450))
    draw = ImageDraw.Draw(framed)
    for step in range(0, 400, 4):
        draw.line((100 + step, 100, 500, 100 + step), fill=step % 255, width=2)
    draw.rectangle((550, 100, 900, 400), fill=60)
    result = engine.recognize(framed, PageTask())
    pictures = [cell for cell in result.cells if cell.category == "Picture"]
    assert pictures and all(cell.text is None for cell in pictures)
    assert "paragraph" in words(result.text)
    assert_cells_inside(result, framed.size)


def test_layout_only_gives_boxes_without_text(engine: TesseractEngine, two_lines: Image.Image) -> None:
    result = engine.recognize(two_lines, PageTask(mode=PromptMode.LAYOUT_ONLY))
    assert len(result.cells) == 2
    assert all(cell.text is None and cell.category == "Text" for cell in result.cells)
    assert result.text == ""
    assert_cells_inside(result, two_lines.size)


def test_text_only_reads_the_page(engine: TesseractEngine, two_lines: Image.Image) -> None:
    assert_reads_both_languages(engine.recognize(two_lines, PageTask(mode=PromptMode.TEXT_ONLY)).text)


@pytest.mark.parametrize("region", [(20, 100, 800, 170), (0, 100, 1000, 180)], ids=["inner", "full-width"])
def test_grounding_reads_only_the_region(
    engine: TesseractEngine, two_lines: Image.Image, region: tuple[int, int, int, int]
) -> None:
    result = engine.recognize(two_lines, PageTask(mode=PromptMode.GROUNDING, bbox=region))
    assert found(RUSSIAN, result.text) >= 2, result.text
    assert found(ENGLISH, result.text) == 0, result.text
    assert [(cell.bbox, cell.category) for cell in result.cells] == [(region, "Text")]


def test_grounding_outside_the_page_is_an_input_error(
    engine: TesseractEngine, two_lines: Image.Image
) -> None:
    with pytest.raises(InputError, match="does not overlap"):
        engine.recognize(two_lines, PageTask(mode=PromptMode.GROUNDING, bbox=(2000, 0, 2100, 50)))


def test_concurrent_pages_each_get_their_own_words(engine: TesseractEngine) -> None:
    pages = {
        "english": (draw_page(["Quantum giraffe ledger"]), {"quantum", "giraffe", "ledger"}),
        "russian": (draw_page(["Молоко, звезда и книга"]), {"молоко", "звезда", "книга"}),
    }
    start = threading.Barrier(2)

    def read_many(name: str) -> list[set[str]]:
        start.wait()
        return [words(engine.recognize(pages[name][0], PageTask()).text) for _ in range(4)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(zip(pages, pool.map(read_many, pages), strict=True))
    for name, reads in outcomes.items():
        expected, other = pages[name][1], pages["russian" if name == "english" else "english"][1]
        for read in reads:
            assert len(expected & read) >= 2 and not other & read, (name, read)


def test_close_is_idempotent_and_final(two_lines: Image.Image) -> None:
    engine = TesseractEngine("eng", None, detect_orientation=False)
    assert "hello" in words(engine.recognize(two_lines, PageTask()).text)
    engine.close()
    engine.close()
    with pytest.raises(EngineUnavailable, match="closed"):
        engine.recognize(two_lines, PageTask())


def test_missing_language_is_unavailable_and_says_what_exists() -> None:
    with pytest.raises(EngineUnavailable) as raised:
        TesseractEngine("xxx", None, detect_orientation=True)
    message = raised.value.message
    assert "xxx" in message and "eng" in message and str(find_tessdata()) in message


def test_missing_osd_is_unavailable_only_when_orientation_is_wanted(tmp_path: Path) -> None:
    directory = eng_only_tessdata(tmp_path)
    with pytest.raises(EngineUnavailable, match="osd"):
        TesseractEngine("eng", directory, detect_orientation=True)
    engine = TesseractEngine("eng", directory, detect_orientation=False)
    engine.close()
    assert engine.tessdata_dir == directory


def test_empty_tessdata_dir_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="installed there: none"):
        TesseractEngine("eng", tmp_path, detect_orientation=False)


def test_tessdata_prefix_is_honoured_as_dir_or_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = eng_only_tessdata(tmp_path)
    for prefix in (directory, tmp_path):
        monkeypatch.setenv("TESSDATA_PREFIX", str(prefix))
        assert require_languages("eng", None, detect_orientation=False) == directory
    assert find_tessdata(tmp_path / "explicit") == tmp_path / "explicit"  # configuration beats the env


def test_system_dirs_newest_version_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for version in ("4.00", "5", "10"):
        (tmp_path / version / "tessdata").mkdir(parents=True)
    monkeypatch.setattr(tessdata, "SYSTEM_PARENTS", (tmp_path,))
    monkeypatch.setattr(tessdata, "FIXED_DIRS", (tmp_path / "fixed",))
    monkeypatch.delenv("TESSDATA_PREFIX", raising=False)
    assert [path.parent.name for path in candidate_dirs()[:3]] == ["10", "5", "4.00"]
    assert find_tessdata() == tmp_path / "10" / "tessdata"


def test_availability_check_and_from_settings(make_settings: Callable[..., Settings]) -> None:
    assert tesseract_available(make_settings())
    assert not tesseract_available(make_settings(tesseract_langs="rus+xxx"))
    engine = TesseractEngine.from_settings(
        make_settings(tesseract_langs="eng", tesseract_detect_orientation=False)
    )
    engine.close()
    assert engine.model.endswith(":eng") and not engine.detect_orientation


def corpus_page(name: str) -> tuple[Image.Image, set[str]]:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    truth = words((CORPUS / "phototest.gt.txt").read_text(encoding="utf-8"))
    return Image.open(path).convert("L"), {word for word in truth if len(word) >= 4}


@pytest.mark.parametrize("name", ["phototest.tif", "phototest-rotated-L.png"])
def test_corpus_phototest(engine: TesseractEngine, name: str) -> None:
    page, expected = corpus_page(name)
    result = engine.recognize(page, PageTask())
    assert len(expected & words(result.text)) >= 0.9 * len(expected), result.text
    assert_cells_inside(result, page.size)


def test_a_scan_without_a_dpi_tag_keeps_all_its_blocks(engine: TesseractEngine) -> None:
    """Regression: with no resolution set, Tesseract dropped the first paragraphs of this page."""
    path = CORPUS / "ru-debian-faq-p10-scan.png"
    if not path.exists():
        pytest.skip(f"{path} not present")
    page = Image.open(path).convert("L")
    assert "dpi" not in page.info
    text = " ".join(engine.recognize(page, PageTask()).text.split())
    assert "результат усилий добровольцев" in text
    assert "высококаче" in text
