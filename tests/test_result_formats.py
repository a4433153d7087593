"""Plain text, ALTO (validated against the ALTO 4.3 schema), layout pictures, and a format that
cannot be written: recorded, while the document's other files are still written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree
from PIL import Image

from ocrq.settings import build_settings
from ocrq.worker.batch import BatchRequest, run_embedded_batch
from ocrq.worker.results.plain_markup import plain_text
from ocrq.worker.results.words import page_words
from tests.scans import ENGLISH, RUSSIAN, make_scan_pdf

SCHEMA_DIR = Path(__file__).parent / "data" / "alto"
XLINK_URL = "http://www.loc.gov/standards/xlink/xlink.xsd"


class _LocalXlink(etree.Resolver):
    """The ALTO schema imports XLink by URL; tests never download, so it resolves to the shipped copy."""

    def resolve(self, url: str | None, pubid: str | None, context: object) -> object:
        if url == XLINK_URL:
            return self.resolve_filename(str(SCHEMA_DIR / "xlink.xsd"), context)
        return None


def alto_schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalXlink())
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "alto-4-3.xsd"), parser))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    make_scan_pdf(root / "book.pdf", [RUSSIAN, ENGLISH])
    settings = build_settings(
        database_url=f"sqlite:///{root / 'ocrq.db'}", engines=["tesseract"], tesseract_langs="rus+eng",
        outputs=["json", "txt", "alto", "layout"], page_workers=1,
    )  # fmt: skip
    run_embedded_batch(settings, BatchRequest([root / "book.pdf"], root / "out"))
    return root / "out"


def test_alto_validates_against_the_alto_4_schema(run: Path) -> None:
    document = etree.parse(str(run / "book.pdf.alto.xml"))
    schema = alto_schema()
    assert schema.validate(document), schema.error_log
    strings = document.getroot().iterfind(".//{*}String")
    words = [s.get("CONTENT") for s in strings]
    assert "французских" in words and "quick" in words
    assert len(document.getroot().findall(".//{*}Page")) == 2


def test_the_schema_check_can_fail() -> None:
    broken = b'<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Layout><Page ID="p1"/></Layout></alto>'
    assert not alto_schema().validate(etree.fromstring(broken))


def test_text_is_in_reading_order_with_a_form_feed_between_pages(run: Path) -> None:
    text = (run / "book.pdf.txt").read_text()
    first, second = text.split("\f")
    assert first.index("Съешь") < first.index("Широкая") < first.index("подъёму")
    assert "quick brown fox" in second and "Съешь" not in second


def test_layout_pictures_are_small_palette_pngs_per_page(run: Path) -> None:
    pictures = sorted((run / "book.pdf.layout").iterdir())
    assert [p.name for p in pictures] == ["page-0001.png", "page-0002.png"]
    with Image.open(pictures[0]) as picture:
        assert picture.mode == "P" and max(picture.size) <= 1100
        colours = {colour for _, colour in picture.convert("RGB").getcolors(1 << 16)}
    assert (31, 119, 180) in colours  # the Text category's colour was drawn
    batch = json.loads((run / "batch.json").read_text())
    assert batch["documents"][0]["outputs"]["layout"].endswith("book.pdf.layout")


def test_a_vanished_source_is_recorded_and_the_rest_written(tmp_path: Path) -> None:
    source = make_scan_pdf(tmp_path / "gone.pdf", [ENGLISH])
    settings = build_settings(
        database_url=f"sqlite:///{tmp_path / 'ocrq.db'}", engines=["tesseract"], tesseract_langs="eng",
        outputs=["txt", "pdf", "layout"], page_workers=1,
    )  # fmt: skip
    from ocrq.worker.batch import open_database
    from ocrq.worker.results.files import write_job_outputs

    run_embedded_batch(settings, BatchRequest([source], tmp_path / "first"))
    source.unlink()
    _, sessions = open_database(settings)
    batch = write_job_outputs(sessions, 1, tmp_path / "again", settings)
    entry = batch["documents"][0]
    assert set(entry["output_errors"]) == {"pdf", "layout"}
    assert entry["output_errors"]["pdf"]["code"] == "output_failed"
    assert "quick brown fox" in (tmp_path / "again" / "gone.pdf.txt").read_text()
    assert not (tmp_path / "again" / "gone.pdf.pdf").exists()
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["batch.json", "gone.pdf.txt"]


@pytest.mark.parametrize(
    ("category", "markup", "plain"),
    [
        ("Text", "## **Итоги** и [ссылка](http://x)\n- пункт *один*", "Итоги и ссылка\nпункт один"),
        ("Table", "<table><tr><td>a</td><td>b &amp; c</td></tr><tr><td>1</td></tr></table>", "a\tb & c\n1"),
        ("Formula", r"$$\alpha \leq \frac{x}{2}$$", "α ≤ (x)/(2)"),
        ("Picture", None, ""),
    ],
)
def test_markup_becomes_the_printed_words(category: str, markup: str | None, plain: str) -> None:
    assert plain_text(category, markup) == plain


def test_words_are_estimated_by_character_share() -> None:
    cell = {"bbox": [0, 0, 110, 40], "category": "Text", "text": "aaaa bbbbb\nccccc"}
    (block,) = page_words(0, 200, 100, [cell]).blocks
    first, second = block.lines
    assert first.box == (0, 0, 110, 20) and second.box == (0, 20, 55, 40)  # 10 chars wide, then 5
    assert [w.box[:3:2] for w in first.words] == [(0, 44), (55, 110)]  # 11 px a character
    assert not block.measured


def test_measured_words_are_kept_as_the_engine_gave_them() -> None:
    words = [{"bbox": [5, 5, 20, 15], "text": "one"}, {"bbox": [25, 5, 40, 15], "text": "two"},
             {"bbox": [5, 25, 30, 35], "text": "three"}]  # fmt: skip
    cell = {"bbox": [0, 0, 50, 40], "category": "Text", "text": "ignored", "words": words}
    (block,) = page_words(0, 50, 40, [cell]).blocks
    assert block.measured and block.text == "one two\nthree"
    assert block.lines[1].words[0].box == (5, 25, 30, 35)


def test_pdfa_when_asked_and_a_reason_when_the_source_cannot_conform(tmp_path: Path) -> None:
    import pikepdf
    import pymupdf

    from ocrq.schemas import DocumentType
    from ocrq.worker.results.searchable_pdf import write_searchable_pdf
    from tests.scans import scan_jpeg

    cells = [{"bbox": [80, 80, 900, 140], "category": "Text", "text": "Проверка PDF/A"}]
    (tmp_path / "scan.jpg").write_bytes(scan_jpeg(["Проверка PDF/A"]))
    words = [page_words(0, 1500, 700, cells)]
    assert (
        write_searchable_pdf(tmp_path / "scan.jpg", DocumentType.JPEG, words, tmp_path / "a.pdf", True)
        is None
    )
    with pikepdf.open(tmp_path / "a.pdf") as pdf:
        assert pdf.open_metadata().pdfa_status == "2B"
    with pymupdf.open() as document:  # Helvetica, not embedded: PDF/A forbids that
        document.new_page(width=540, height=252).insert_text((50, 50), "Base-14 font")
        document.save(tmp_path / "plain.pdf")
    warning = write_searchable_pdf(tmp_path / "plain.pdf", DocumentType.PDF, words, tmp_path / "b.pdf", True)
    assert warning is not None and warning.code == "pdfa_failed"
    with pikepdf.open(tmp_path / "b.pdf") as pdf:  # still written, searchable, just not PDF/A
        assert pdf.open_metadata().pdfa_status == ""
    with pymupdf.open(tmp_path / "b.pdf") as document:
        assert "Проверка" in document[0].get_text()


def test_image_pages_in_several_parts_merge_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pymupdf

    from ocrq.schemas import DocumentType
    from ocrq.worker.results import searchable_pdf
    from tests.factories import make_multiframe_tiff

    monkeypatch.setattr(searchable_pdf, "CHUNK_PAGES", 2)  # three frames: a part of two, a part of one
    tiff = make_multiframe_tiff(tmp_path / "pages.tiff", ["one", "two", "three"])
    words = [
        page_words(
            i, 1200, 400, [{"bbox": [50, 50, 600, 150], "category": "Text", "text": f"страница {name}"}]
        )
        for i, name in enumerate(["one", "two", "three"])
    ]
    searchable_pdf.write_searchable_pdf(tiff, DocumentType.TIFF, words, tmp_path / "out.pdf")
    with pymupdf.open(tmp_path / "out.pdf") as document:
        assert [page.get_text().split() for page in document] == [
            ["страница", n] for n in ("one", "two", "three")
        ]
        assert document[0].rect.width == pytest.approx(1200 * 72 / 300)  # no DPI tag: 300 dpi assumed
