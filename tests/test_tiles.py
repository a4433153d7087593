"""Pages larger than the pixel cap are read in tiles at the job's DPI, not shrunk below legibility."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pymupdf
import pytest
from click.testing import CliRunner
from PIL import Image

from ocrq.api.cli import cli
from ocrq.worker.documents.tiles import owning_tile, plan_tiles
from tests.factories import DEJAVU_SANS, make_text_image

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
    square = plan_tiles(5000, 5000, 4_000_000, 100)
    assert len(square) == 9 and all((x1 - x0) * (y1 - y0) <= 4_000_000 for x0, y0, x1, y1 in square)


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
