"""Rendering real documents made in tmp_path (plus corpus files when present): pages, limits, failures."""

from __future__ import annotations

import io
import resource
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFile, ImageOps, JpegImagePlugin

from ocrq.errors import (
    ConfigurationError,
    EmptyDocument,
    EncryptedDocument,
    PageRenderError,
    SourceMissing,
    TooLarge,
    UnreadableDocument,
)
from ocrq.schemas import DocumentType
from ocrq.settings import Settings
from ocrq.worker.documents.render import (
    ImageDocument,
    OpenedDocument,
    PdfDocument,
    RenderLimits,
    open_document,
)
from ocrq.worker.documents.sniff import sniff_type
from tests.factories import (
    make_bomb_png,
    make_empty_pdf,
    make_encrypted_pdf,
    make_exif_rotated_jpeg,
    make_multiframe_tiff,
    make_pdf_missing_page,
    make_pdf_with_broken_page_tree,
    make_text_image,
    make_text_pdf,
    make_truncated,
)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
DEFAULTS = RenderLimits(dpi=200, max_page_pixels=40_000_000, max_source_pixels=200_000_000, max_pages=10_000)
A4_AT_200_DPI = (1654, 2339)


def limits(**changes: int) -> RenderLimits:
    return RenderLimits(**(DEFAULTS.__dict__ | changes))


def opened(path: Path, render_limits: RenderLimits = DEFAULTS) -> OpenedDocument:
    return open_document(path, sniff_type(path), render_limits)


def render_only(path: Path, mode: str = "L", render_limits: RenderLimits = DEFAULTS) -> Image.Image:
    with opened(path, render_limits) as document:
        assert document.page_count == 1
        return document.render(0, mode)


def ink_fraction(image: Image.Image) -> float:
    """Share of dark pixels: text pages have some, blank or lost pages none."""
    histogram = image.convert("L").histogram()
    return sum(histogram[:128]) / (image.width * image.height)


def ink_box(image: Image.Image) -> tuple[int, int, int, int]:
    """Where the text is: the bounding box of everything not white."""
    box = ImageOps.invert(image.convert("L")).getbbox()
    assert box is not None, "blank page"
    return box


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    difference = ImageChops.difference(first.convert("L"), second.convert("L"))
    return sum(value * count for value, count in enumerate(difference.histogram())) / (
        first.width * first.height
    )


def test_limits_come_from_settings(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        render_dpi=150, max_page_pixels=123_456, max_source_pixels=7_000_000, max_pages_per_document=9
    )
    assert RenderLimits.from_settings(settings) == RenderLimits(150, 123_456, 7_000_000, 9)


# --- PDF ---------------------------------------------------------------------


def test_pdf_pages_render_in_grey_and_rgb_at_the_configured_dpi(tmp_path: Path) -> None:
    path = make_text_pdf(tmp_path / "letters.pdf", ["Invoice number seven", "Счёт номер семь"])
    with opened(path) as document:
        assert isinstance(document, PdfDocument) and document.page_count == 2
        grey, colour = document.render(1, "L"), document.render(1, "RGB")
    assert grey.mode == "L" and colour.mode == "RGB"
    assert grey.size == colour.size == A4_AT_200_DPI
    assert 0.002 < ink_fraction(grey) < 0.2  # the Cyrillic line was drawn, the page is not black


def test_text_that_does_not_fit_is_a_factory_error_not_a_blank_page(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        make_text_pdf(tmp_path / "long.pdf", ["word " * 2000])
    with pytest.raises(ValueError, match="does not fit"):
        make_text_image("word " * 500)


@pytest.mark.parametrize("dpi", [72, 100, 300])
def test_dpi_is_honoured(tmp_path: Path, dpi: int) -> None:
    path = make_text_pdf(tmp_path / "a4.pdf", ["A4"])
    width, height = render_only(path, render_limits=limits(dpi=dpi)).size
    assert abs(width - 595.28 * dpi / 72) <= 1 and abs(height - 841.89 * dpi / 72) <= 1


def test_page_rotate_90_swaps_width_and_height_and_turns_the_content(tmp_path: Path) -> None:
    upright = render_only(make_text_pdf(tmp_path / "upright.pdf", ["Turned text"]))
    turned = render_only(make_text_pdf(tmp_path / "turned.pdf", ["Turned text"], rotate=90))
    assert turned.size == (A4_AT_200_DPI[1], A4_AT_200_DPI[0])
    clockwise = ink_box(upright.transpose(Image.Transpose.ROTATE_270))
    counterclockwise = ink_box(upright.transpose(Image.Transpose.ROTATE_90))
    assert max(abs(a - b) for a, b in zip(ink_box(turned), clockwise, strict=True)) <= 2
    assert max(abs(a - b) for a, b in zip(ink_box(turned), counterclockwise, strict=True)) > 100


@pytest.mark.parametrize("size", [(5000.0, 5000.0), (14000.0, 700.0), (595.0, 842.0)])
def test_giant_pages_are_downscaled_under_the_pixel_cap(tmp_path: Path, size: tuple[float, float]) -> None:
    cap = 1_000_000
    path = make_text_pdf(tmp_path / "giant.pdf", ["Giant page"], size=size)
    image = render_only(path, render_limits=limits(max_page_pixels=cap))
    assert image.width * image.height <= cap
    assert image.width * image.height > 0.98 * cap  # shrunk just enough, not more
    assert image.width / image.height == pytest.approx(size[0] / size[1], rel=0.01)


def test_pages_under_the_cap_keep_the_dpi(tmp_path: Path) -> None:
    path = make_text_pdf(tmp_path / "a4.pdf", ["A4"])
    assert render_only(path, render_limits=limits(max_page_pixels=4_000_000)).size == A4_AT_200_DPI


@pytest.fixture(scope="module")
def thousand_pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    return make_text_pdf(folder / "long.pdf", [f"Page {number}" for number in range(1, 1001)])


@pytest.fixture
def rendered_pages(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Numbers of the PDF pages MuPDF rasterises during the test."""
    calls: list[int] = []
    original = pymupdf.Page.get_pixmap

    def spy(page: pymupdf.Page, *args: object, **kwargs: object) -> pymupdf.Pixmap:
        calls.append(page.number)
        return original(page, *args, **kwargs)

    monkeypatch.setattr(pymupdf.Page, "get_pixmap", spy)
    yield calls


def test_one_page_of_a_long_pdf_renders_alone(
    tmp_path: Path, thousand_pages: Path, rendered_pages: list[int]
) -> None:
    clock = time.perf_counter()
    with opened(thousand_pages) as document:
        assert document.page_count == 1000
        assert rendered_pages == []  # opening counts pages without rendering any
        page_500 = document.render(499, "L")
    assert time.perf_counter() - clock < 2.0
    assert rendered_pages == [499]
    alone = render_only(make_text_pdf(tmp_path / "alone.pdf", ["Page 500"]))
    assert mean_difference(page_500, alone) == 0  # it is page 500 and nothing else


def test_documents_render_in_parallel_threads_like_serially(tmp_path: Path) -> None:
    """The pipeline gives each thread its own document; MuPDF itself must not be entered twice at once."""
    path = make_text_pdf(tmp_path / "six.pdf", [f"Parallel page {n}" for n in range(6)])
    with opened(path, limits(dpi=72)) as document:
        serial = [document.render(index, "L").tobytes() for index in range(6)]

    def render_all(_: int) -> list[bytes]:
        with opened(path, limits(dpi=72)) as own:
            return [own.render(index, "L").tobytes() for index in range(6)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(render_all, range(8)))
    assert all(result == serial for result in results)


def test_too_many_pages_is_refused_when_opening(tmp_path: Path, rendered_pages: list[int]) -> None:
    path = make_text_pdf(tmp_path / "three.pdf", ["one", "two", "three"])
    with pytest.raises(TooLarge, match="3 pages; the limit is 2"):
        opened(path, limits(max_pages=2))
    assert rendered_pages == []


def test_password_protected_pdf_is_encrypted(tmp_path: Path) -> None:
    with pytest.raises(EncryptedDocument) as raised:
        opened(make_encrypted_pdf(tmp_path / "locked.pdf"))
    assert raised.value.code == "encrypted"


def test_owner_password_only_pdf_opens_and_renders(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "restricted.pdf", user_password="", text="Printing is restricted")
    assert pymupdf.open(path).is_encrypted or b"/Encrypt" in path.read_bytes()
    assert ink_fraction(render_only(path)) > 0.001


def test_zero_page_pdf_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyDocument, match="no pages"):
        opened(make_empty_pdf(tmp_path / "nothing.pdf"))


def test_zero_byte_file_is_empty_even_without_sniffing(tmp_path: Path) -> None:
    path = tmp_path / "zero.pdf"
    path.write_bytes(b"")
    with pytest.raises(EmptyDocument):
        open_document(path, DocumentType.PDF, DEFAULTS)


def test_missing_file_is_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SourceMissing):
        open_document(tmp_path / "gone.pdf", DocumentType.PDF, DEFAULTS)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_pdf_opens_and_every_page_says_it_is_damaged(tmp_path: Path, keep: float) -> None:
    """MuPDF repairs what it can; each page is read, flagged, never silently whole (issue 11)."""
    source = make_text_pdf(tmp_path / "whole.pdf", ["Invoice number seven", "Счёт номер семь"])
    with opened(make_truncated(source, tmp_path / "cut.pdf", keep=keep)) as document:
        assert document.page_count == 2
        for index in range(document.page_count):
            _, notes = document.render_with_notes(index, "L")
            assert notes and {(note.code, note.warning) for note in notes} == {("damaged_source", True)}
            assert "truncated" in notes[0].message


def test_truncated_pdf_without_a_recoverable_page_is_unreadable(tmp_path: Path) -> None:
    document = pymupdf.open()
    document.new_page().insert_text((72, 72), "Only page")
    document.save(tmp_path / "packed.pdf", use_objstms=True, deflate=True)  # page tree inside a stream
    with pytest.raises(UnreadableDocument) as raised:
        opened(make_truncated(tmp_path / "packed.pdf", tmp_path / "cut.pdf", keep=0.5))
    assert raised.value.code == "unreadable"


def test_sound_pdf_pages_have_no_notes(tmp_path: Path) -> None:
    with opened(make_text_pdf(tmp_path / "fine.pdf", ["Nothing wrong here"])) as document:
        assert document.render_with_notes(0, "L")[1] == []


@pytest.mark.parametrize(
    "content", [b"%PDF-1.4\n%%EOF\n", b"%PDF-1.7\n" + bytes(range(256)) * 4], ids=["header-only", "noise"]
)
def test_pdf_header_without_a_document_is_unreadable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(content)
    with pytest.raises(UnreadableDocument):
        opened(path)


def test_page_tree_that_cannot_be_counted_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableDocument, match="Invalid number of pages"):
        opened(make_pdf_with_broken_page_tree(tmp_path / "tree.pdf"))


def test_a_lost_page_fails_alone_and_the_others_still_render(tmp_path: Path) -> None:
    with opened(make_pdf_missing_page(tmp_path / "partial.pdf")) as document:
        assert document.page_count == 2
        with pytest.raises(PageRenderError, match=r"page 2 of partial\.pdf") as raised:
            document.render(1, "L")
        assert ink_fraction(document.render(0, "L")) > 0.001
    assert raised.value.code == "render_failed"


def test_mupdf_errors_during_rendering_become_page_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = pymupdf.Page.get_pixmap

    def fail_on_page_two(page: pymupdf.Page, *args: object, **kwargs: object) -> pymupdf.Pixmap:
        if page.number == 1:
            raise RuntimeError("code=2: cannot decode image")  # what PyMuPDF raises for MuPDF errors
        return original(page, *args, **kwargs)

    monkeypatch.setattr(pymupdf.Page, "get_pixmap", fail_on_page_two)
    with opened(make_text_pdf(tmp_path / "three.pdf", ["one", "two", "three"])) as document:
        with pytest.raises(PageRenderError, match="cannot decode image"):
            document.render(1, "L")
        assert document.render(2, "L").size == A4_AT_200_DPI


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    with opened(make_text_pdf(tmp_path / "one.pdf", ["one"])) as document:
        with pytest.raises(PageRenderError, match="has no page 2"):
            document.render(1, "L")
        with pytest.raises(ConfigurationError):
            document.render(0, "CMYK")
    with pytest.raises(PageRenderError, match="closed"):
        document.render(0, "L")
    document.close()  # twice is fine


# --- images ------------------------------------------------------------------

IMAGE_FORMATS = {
    "png": {"format": "PNG"},
    "jpeg": {"format": "JPEG", "quality": 95},
    "tiff": {"format": "TIFF", "compression": "tiff_lzw"},
    "webp": {"format": "WEBP", "lossless": True},
    "bmp": {"format": "BMP"},
    "gif": {"format": "GIF"},
}


@pytest.mark.parametrize("kind", IMAGE_FORMATS)
def test_images_render_one_page_at_native_size(tmp_path: Path, kind: str) -> None:
    source = make_text_image("Native pixels", size=(900, 300))
    path = tmp_path / "scan.img"
    source.save(path, **IMAGE_FORMATS[kind])
    with opened(path, limits(dpi=600)) as document:  # images are never resampled to the dpi
        assert isinstance(document, ImageDocument) and document.page_count == 1
        grey, colour = document.render(0, "L"), document.render(0, "RGB")
    assert grey.mode == "L" and colour.mode == "RGB"
    assert grey.size == colour.size == (900, 300)
    assert mean_difference(grey, source) < (3.0 if kind == "jpeg" else 0.01)


def test_multiframe_tiff_has_a_page_per_frame(tmp_path: Path) -> None:
    texts = ["First frame", "Второй кадр", "Third frame"]
    path = make_multiframe_tiff(tmp_path / "pages.tif", texts)
    with opened(path) as document:
        assert document.page_count == 3
        pages = [document.render(index, "L") for index in (2, 0, 1)]
    for page, text in zip(pages, [texts[2], texts[0], texts[1]], strict=True):
        assert mean_difference(page, make_text_image(text, mode="L")) == 0


def test_animations_other_than_tiff_are_their_first_frame(tmp_path: Path) -> None:
    first, second = make_text_image("First", mode="L"), make_text_image("Second", mode="L")
    path = tmp_path / "animated.gif"
    first.save(path, format="GIF", save_all=True, append_images=[second], duration=100)
    assert getattr(Image.open(path), "n_frames", 1) == 2
    assert mean_difference(render_only(path), first) == 0


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = make_exif_rotated_jpeg(tmp_path / "phone.jpg", "Upright text", orientation=6)
    assert Image.open(path).size == (400, 1200)  # stored on its side
    page = render_only(path)
    assert page.size == (1200, 400)
    assert mean_difference(page, make_text_image("Upright text")) < 3.0


def test_rgba_and_palette_transparency_become_white_paper(tmp_path: Path) -> None:
    clear = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    ImageDraw.Draw(clear).rectangle((10, 10, 50, 50), fill=(0, 0, 0, 255))
    clear.save(tmp_path / "rgba.png")
    clear.convert("P").save(tmp_path / "palette.png", transparency=0)
    clear.convert("LA").save(tmp_path / "la.png")
    for name in ("rgba.png", "palette.png", "la.png"):
        page = render_only(tmp_path / name, "RGB")
        assert page.getpixel((150, 80)) == (255, 255, 255), name  # transparent → paper
        assert page.getpixel((30, 30)) == (0, 0, 0), name  # opaque ink stays


def test_one_bit_palette_and_cmyk_convert_to_grey_and_rgb(tmp_path: Path) -> None:
    ink = make_text_image("Mode test", size=(400, 120))
    ink.convert("1").save(tmp_path / "bilevel.tif", compression="group4")
    ink.quantize(8).save(tmp_path / "palette.png")
    ink.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    for name in ("bilevel.tif", "palette.png", "cmyk.jpg"):
        grey, colour = render_only(tmp_path / name, "L"), render_only(tmp_path / name, "RGB")
        assert (grey.mode, colour.mode) == ("L", "RGB")
        assert grey.getpixel((5, 5)) > 245 and colour.getpixel((5, 5))[0] > 245, name  # white stays white
        assert mean_difference(grey, ink) < 8.0, name


def test_sixteen_bit_greys_are_scaled_not_clipped_white(tmp_path: Path) -> None:
    Image.frombytes("I;16", (3, 1), struct.pack("<3H", 0, 32768, 65535)).save(tmp_path / "deep.png")
    Image.frombytes("I;16B", (3, 1), struct.pack(">3H", 0, 32768, 65535)).save(tmp_path / "deep.tif")
    assert Image.open(tmp_path / "deep.tif").mode == "I;16B"  # big-endian TIFF ("MM")
    for name in ("deep.png", "deep.tif"):
        page = render_only(tmp_path / name)
        black, middle, white = (page.getpixel((x, 0)) for x in range(3))
        assert (black, white) == (0, 255) and middle in (127, 128), name


def test_large_images_are_downscaled_under_the_cap(tmp_path: Path) -> None:
    make_text_image("Wide scan", size=(2000, 1000)).save(tmp_path / "wide.png")
    page = render_only(tmp_path / "wide.png", render_limits=limits(max_page_pixels=500_000))
    assert page.width * page.height <= 500_000 and page.width * page.height > 0.99 * 500_000
    assert page.width == 2 * page.height


def test_large_jpegs_decode_at_reduced_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_text_image("Big photo", size=(4000, 3000)).save(tmp_path / "big.jpg", quality=90)
    drafts: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(image: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        result = original(image, mode, size)
        drafts.append(image.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    page = render_only(tmp_path / "big.jpg", render_limits=limits(max_page_pixels=1_000_000))
    assert drafts == [(2000, 1500)]  # libjpeg decoded at 1/2 scale, not 12 Mpx then shrunk
    assert page.width * page.height <= 1_000_000
    assert page.width / page.height == pytest.approx(4 / 3, rel=0.01)


@pytest.fixture
def decoded_images(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """Sizes of the images Pillow decodes during the test."""
    calls: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load

    def spy(image: ImageFile.ImageFile) -> object:
        calls.append(image.size)
        return original(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    yield calls


def test_decompression_bomb_is_refused_without_decoding(
    tmp_path: Path, decoded_images: list[tuple[int, int]]
) -> None:
    path = make_bomb_png(tmp_path / "bomb.png")  # 60000 x 60000 declared: 3.6 GB if decoded
    assert path.stat().st_size < 1000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clock = time.perf_counter()
    with pytest.raises(TooLarge) as raised:
        opened(path)
    assert time.perf_counter() - clock < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 100 * 1024  # KiB
    assert decoded_images == []
    assert raised.value.code == "too_large"


def test_image_over_our_source_limit_is_refused_from_its_header(
    tmp_path: Path, decoded_images: list[tuple[int, int]]
) -> None:
    """Under Pillow's own bomb limit but over ours: refused before any decoding."""
    path = make_bomb_png(tmp_path / "big.png", width=3000, height=3000)
    with pytest.raises(TooLarge, match="3,000x3,000 pixels; the limit is 1,000,000"):
        opened(path, limits(max_source_pixels=1_000_000))
    assert decoded_images == []
    with opened(path, limits(max_source_pixels=10_000_000)) as document:  # the limit was the reason
        assert document.render(0, "L").size == (3000, 3000)
    assert set(decoded_images) == {(3000, 3000)}  # decoded only when rendered


def test_too_many_tiff_frames_is_refused(tmp_path: Path) -> None:
    path = make_multiframe_tiff(tmp_path / "pages.tif", ["one", "two", "three"], size=(200, 100))
    with pytest.raises(TooLarge, match="3 pages"):
        opened(path, limits(max_pages=2))


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_truncated_image_opens_but_its_page_fails(tmp_path: Path, kind: str) -> None:
    source = tmp_path / f"whole.{kind}"
    make_text_image("Cut short", size=(1200, 800)).save(source, **IMAGE_FORMATS[kind])
    path = make_truncated(source, tmp_path / f"cut.{kind}", keep=0.5)
    with opened(path) as document:
        assert document.page_count == 1
        with pytest.raises(PageRenderError, match="page 1 of cut") as raised:
            document.render(0, "L")
    assert "truncated" in raised.value.message or "broken" in raised.value.message


def test_content_that_does_not_match_the_type_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "scan.jpg"
    make_text_image("png inside").save(path, format="PNG")
    with pytest.raises(UnreadableDocument):
        open_document(path, DocumentType.JPEG, DEFAULTS)


def test_rendered_pages_do_not_depend_on_the_open_file(tmp_path: Path) -> None:
    """Pages outlive the document: the pipeline OCRs after the next render or a close."""
    path = tmp_path / "page.png"
    make_text_image("Independent").save(path)
    with opened(path) as document:
        page = document.render(0, "L")
    path.unlink()
    assert page.tobytes() and ink_fraction(page) > 0.001
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    assert buffer.tell() > 0


# --- the shared corpus ---------------------------------------------------------

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")

CORPUS_REFUSALS = {
    "libreoffice-writer-password.pdf": EncryptedDocument,
    "invalid.pdf": UnreadableDocument,
    "zero-byte.pdf": EmptyDocument,
    "qpdf-empty-zero-pages.pdf": EmptyDocument,
    "decompression_bomb.gif": TooLarge,
}


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_REFUSALS)
def test_corpus_documents_that_are_refused(name: str) -> None:
    path = CORPUS / name
    doc_type = DocumentType.PDF if name.endswith(".pdf") else DocumentType.GIF
    with pytest.raises(CORPUS_REFUSALS[name]):
        open_document(path, doc_type, DEFAULTS)


CORPUS_PAGES = {
    "qpdf-bad-xref.pdf": (1, (1700, 2200)),  # repaired by MuPDF, still complete
    "doclaynet-2pages.tif": (2, (612, 792)),
    "typewriter-scan.pdf": (1, (4000, 2864)),  # PNG bytes under a .pdf name
    "linn-rotated_skew.pdf": (1, (1700, 2200)),  # /Rotate 90 on a landscape MediaBox
    "nics-background-checks-2015-11.pdf": (1, (2800, 1700)),
}


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_PAGES)
def test_corpus_documents_that_render(name: str) -> None:
    pages, size = CORPUS_PAGES[name]
    with opened(CORPUS / name) as document:
        assert document.page_count == pages
        last = document.render(pages - 1, "L")
    assert last.size == size
    assert ink_fraction(last) > 0.0002  # qpdf-bad-xref.pdf holds a single word


@needs_corpus
def test_corpus_hugemono_renders_downscaled_within_the_default_pixel_cap() -> None:
    """8400 pt square with a 35000 px CCITT image: 23333 px at 200 dpi, so MuPDF renders it at ~54 dpi."""
    clock = time.perf_counter()
    page = render_only(CORPUS / "hugemono.pdf")
    assert page.size == (6324, 6324)
    assert page.width * page.height <= DEFAULTS.max_page_pixels
    assert 0 < ink_fraction(page) < 0.01  # the one line of text survives the downscale
    assert time.perf_counter() - clock < 20
