"""Pages larger than the pixel cap are read in tiles at the job's DPI, not shrunk below legibility."""

from __future__ import annotations

import io
import json
from itertools import pairwise
from pathlib import Path

import pymupdf
import pytest
from click.testing import CliRunner
from PIL import Image
from rapidfuzz.distance import Levenshtein

from ocrq.api.cli import cli
from ocrq.schemas import DocumentType, LayoutCell, PageResult, TextLine, Word
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.documents.tiles import MAX_TILES, owning_tile, plan_tiles
from ocrq.worker.engines.regions import _keep_own_cells, _plan
from tests.factories import DEJAVU_SANS, make_text_image
from tests.scans import ENGLISH, scan_jpeg

BANNER = (200 * 72, 3 * 72)  # 200 inches by 3: at 200 dpi 40,000 x 600 pixels
WORDS = {4: "Warehouse", 100: "Quarterly", 195: "Signature"}  # inch along the banner -> word


def _banner(path: Path, rotate: int = 0) -> Path:
    document = pymupdf.open()
    page = document.new_page(width=BANNER[0], height=BANNER[1])
    for inch, word in WORDS.items():
        page.insert_text(
            (inch * 72, 100), f"{word} report", fontsize=6, fontname="dejavu", fontfile=str(DEJAVU_SANS)
        )
    page.set_rotation(rotate)
    document.save(path)  # an image-free page: its layer is switched off below to force OCR
    document.close()
    return path


def _run(tmp_path: Path, document: str = "banner.pdf", **env: str) -> dict:
    env = {
        "OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'ocrq.db'}",
        "OCRQ_ENGINES": "tesseract",
        "OCRQ_TEXT_LAYER": "off",
        "OCRQ_MAX_PAGE_PIXELS": "4000000",
        "OCRQ_TESSERACT_LANGS": "eng",
    } | env
    result = CliRunner().invoke(
        cli, ["submit-batch", str(tmp_path / "in"), "--out", str(tmp_path / "out")], env=env
    )
    assert result.exit_code == 0, result.output
    (page,) = json.loads((tmp_path / "out" / f"{document}.json").read_text())["pages"]
    return page


@pytest.mark.parametrize("rotate", [0, 90])
def test_a_banner_beyond_the_pixel_cap_is_read_in_tiles_at_full_dpi(tmp_path: Path, rotate: int) -> None:
    (tmp_path / "in").mkdir()
    _banner(tmp_path / "in" / "banner.pdf", rotate)
    page = _run(tmp_path)
    assert [note["code"] for note in page["notes"]] == ["tiled"]
    assert "at 200 dpi" in page["notes"][0]["message"]
    assert (page["width"], page["height"]) == ((40000, 600) if rotate == 0 else (600, 40000))
    for word in WORDS.values():
        assert page["text"].count(word) == 1, (word, page["text"])  # read once, overlaps not doubled
    words = {w["text"]: w["bbox"] for cell in page["cells"] for line in cell["lines"] for w in line["words"]}
    along = 0 if rotate == 0 else 1  # the banner runs across, or down the shown page
    for inch, word in WORDS.items():
        assert abs(words[word][along] - inch * 200) < 60, (word, words[word])


def test_shrinking_instead_would_lose_the_text(tmp_path: Path) -> None:
    """The control: one render under the cap is about 71 dpi, where 6-point type is not read."""
    from ocrq.schemas import DocumentType, PageTask
    from ocrq.worker.documents.render import RenderLimits, open_document
    from ocrq.worker.engines.tesseract import TesseractEngine

    path = _banner(tmp_path / "banner.pdf")
    with open_document(path, DocumentType.PDF, RenderLimits(200, 4_000_000, 200_000_000, 10)) as document:
        image, notes = document.render_with_notes(0, "L")
    assert [note.code for note in notes] == ["scale_note"]
    engine = TesseractEngine("eng")
    text = engine.recognize(image, PageTask()).text
    engine.close()
    assert sum(word in text for word in WORDS.values()) < len(WORDS)


def test_tiles_cover_the_page_within_the_cap_and_each_cell_has_one_owner() -> None:
    tiles = plan_tiles(40000, 600, 4_000_000, 100)
    assert all((x1 - x0) * (y1 - y0) <= 4_000_000 for x0, y0, x1, y1 in tiles)
    assert tiles[0][0] == 0 and tiles[-1][2] == 40000
    assert all(a[2] - b[0] >= 100 for a, b in pairwise(tiles))  # overlapping
    middle_of_overlap = (tiles[0][2] + tiles[1][0]) // 2
    left, right = (
        (middle_of_overlap - 30, 10, middle_of_overlap - 10, 30),
        (middle_of_overlap + 10, 10, middle_of_overlap + 30, 30),
    )
    assert (owning_tile(left, tiles), owning_tile(right, tiles)) == (0, 1)
    assert plan_tiles(1000, 1000, 4_000_000, 100) == [(0, 0, 1000, 1000)]
    square = plan_tiles(5000, 5000, 4_000_000, 100)  # 800-pixel bands across, not a 3 x 3 grid
    assert len(square) == 8 and all((x1 - x0) * (y1 - y0) <= 4_000_000 for x0, y0, x1, y1 in square)
    assert all((x0, x1) == (0, 5000) for x0, _, x1, _ in square)


def test_an_image_beyond_the_pixel_cap_is_read_in_tiles_at_full_resolution(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    strip = Image.new("L", (9000, 500), "white")
    for number, word in enumerate(("Warehouse", "Quarterly", "Signature")):
        strip.paste(make_text_image(f"{word} report", (1400, 300), mode="L"), (200 + number * 4000, 100))
    strip.save(tmp_path / "in" / "banner.png", dpi=(300, 300))
    env = {"OCRQ_MAX_PAGE_PIXELS": "1500000"}
    page = _run(tmp_path, **env, document="banner.png")
    assert page["notes"][0]["code"] == "tiled" and "full resolution" in page["notes"][0]["message"]
    assert (page["width"], page["height"]) == (9000, 500)
    for word in ("Warehouse", "Quarterly", "Signature"):
        assert page["text"].count(word) == 1, page["text"]


def test_a_blank_oversized_page_is_an_empty_done_page(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    document = pymupdf.open()
    document.new_page(width=BANNER[0], height=BANNER[1])
    document.save(tmp_path / "in" / "banner.pdf")
    page = _run(tmp_path)
    assert (page["status"], page["text"], page["engine"]) == ("done", "", "tesseract")
    assert page["notes"][-1]["code"] == "tiled"


def test_a_scan_over_the_cap_reads_each_line_once_and_whole(tmp_path: Path) -> None:
    """Bands, not a grid, and lines owned one by one: no line cut lengthwise, none read twice."""
    (tmp_path / "in").mkdir()
    Image.open(io.BytesIO(scan_jpeg(ENGLISH))).save(tmp_path / "in" / "scan.png")  # 1500 x 700
    page = _run(tmp_path, OCRQ_MAX_PAGE_PIXELS="400000", document="scan.png")
    assert page["notes"][0]["code"] == "tiled", page["notes"]
    lines = [" ".join(w["text"] for w in line["words"]) for c in page["cells"] for line in c["lines"]]
    assert len(lines) == len(ENGLISH), lines
    for line, sentence in zip(lines, ENGLISH, strict=True):
        assert Levenshtein.normalized_distance(line, sentence) < 0.08, (line, sentence)
    assert Levenshtein.normalized_distance(page["text"], "\n\n".join(ENGLISH)) < 0.08, page["text"]
    assert "Sphinx of black quartz" in page["cells"][-1]["text"]  # the web page's overlay test reads it


def test_a_page_with_room_for_tall_bands_is_cut_in_full_width_bands() -> None:
    tiles = plan_tiles(1500, 700, 400_000, 100)
    assert all((x0, x1) == (0, 1500) for x0, _, x1, _ in tiles)  # no edge cuts a line lengthwise
    assert all((x1 - x0) * (y1 - y0) <= 400_000 for x0, y0, x1, y1 in tiles)
    assert tiles[0][1] == 0 and tiles[-1][3] == 700
    assert all(a[3] - b[1] >= 100 for a, b in pairwise(tiles))  # a line of the overlap lies whole in both
    tall = plan_tiles(2000, 30000, 4_000_000, 100)
    band = tall[0][3] - tall[0][1]
    assert band == 2000 and all(a[3] - b[1] >= band // 4 for a, b in pairwise(tall))  # whatever the dpi


def test_a_page_too_wide_for_bands_falls_back_to_a_grid() -> None:
    """A band of the cap's pixels thinner than two overlaps cannot hold a line plus its overlap."""
    assert len(plan_tiles(1500, 700, 400_000, 150)) > 4  # a band would be 266 px, under 2 x 150
    assert any(x0 > 0 for x0, _, _, _ in plan_tiles(1500, 700, 400_000, 150))
    banner = plan_tiles(40000, 600, 4_000_000, 100)  # a band would be 100 px tall
    assert len({(y0, y1) for _, y0, _, y1 in banner}) == 1 and len(banner) > 1


def _line(y: int, x0: int, text: str) -> TextLine:
    words = tuple(
        Word((x0 + 60 * n, y, x0 + 60 * n + 50, y + 40), word) for n, word in enumerate(text.split())
    )
    return TextLine((x0, y, words[-1].bbox[2], y + 40), words)


def test_a_paragraph_across_two_tiles_keeps_each_line_in_one_tile() -> None:
    """A paragraph's centre lies in both tiles; its lines each lie nearest one tile's centre."""
    tiles = [(0, 0, 1000, 300), (0, 200, 1000, 500)]  # centres at y 150 and 350
    read_by_first = [_line(100, 0, "one whole line"), _line(220, 0, "shared line"), _line(280, 0, "cut")]
    read_by_second = [_line(20, 0, "shared line"), _line(80, 0, "cut line whole"), _line(180, 0, "last")]
    kept = []
    for number, lines in enumerate((read_by_first, read_by_second)):
        box = (0, min(line.bbox[1] for line in lines), 1000, max(line.bbox[3] for line in lines))
        found = PageResult("", "", "tesseract", "eng", [LayoutCell(box, "Text", "engine text", tuple(lines))])
        _keep_own_cells(found, tiles[number], number, tiles)
        kept += found.cells
    assert [cell.text for cell in kept] == ["one whole line\nshared line", "cut line whole\nlast"]
    assert kept[0].bbox == (0, 100, 170, 260) and kept[1].bbox == (0, 280, 170, 420)
    picture = LayoutCell((0, 210, 100, 260), "Picture")  # no lines (a VLM's cell): by its own centre
    found = PageResult("", "", "vlm", "m", [picture])
    _keep_own_cells(found, tiles[0], 0, tiles)
    assert found.cells == [picture]


def test_a_tall_page_is_lowered_to_at_most_max_tiles(tmp_path: Path) -> None:
    """Bands overlap by a quarter or more, so the plan, not the area alone, decides the zoom."""
    Image.new("L", (1000, 60000), 255).save(tmp_path / "tall.png", dpi=(300, 300))
    with open_document(tmp_path / "tall.png", DocumentType.PNG, RenderLimits(200, 100_000, 10**8, 10)) as doc:
        zoom, size, tiles = _plan(doc, 0)
    assert len(tiles) <= MAX_TILES and zoom < 1
    assert tiles[-1][3] == size[1] and all(x1 == size[0] for _, _, x1, _ in tiles)
