"""Cost of the result formats per page, against MuPDF rendering the same page for OCR (200 dpi).

Pages are scans (a JPEG per page, A4 at 200 dpi) with 30 lines of ten words each, placed the way
a dots.ocr answer is (block boxes, words estimated by character share), so no OCR runs here:
what is measured is the output path alone. Each size runs in its own process, which also
reports its peak RSS, so memory can be compared across page counts (flat is the target).

    .venv/bin/python -m bench.searchable_pdf --pages 20 200 1000
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw, ImageFont

from ocrq.schemas import DocumentType
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.results.alto import document_alto
from ocrq.worker.results.layout_picture import layout_pictures
from ocrq.worker.results.plain_text import document_text
from ocrq.worker.results.searchable_pdf import write_searchable_pdf
from ocrq.worker.results.words import PageWords, page_words

DPI = 200
PAGE_PX = (1654, 2339)
LINES = 30
WORDS = ["Съешь", "же", "ещё", "этих", "мягких", "французских", "булок,", "да", "выпей", "quick"]


def make_scan_pdf(path: Path, pages: int) -> None:
    """One JPEG reused on every page: the PDF stays small, MuPDF still decodes it for each render."""
    image = Image.new("L", PAGE_PX, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", 34)
    for line in range(LINES):
        draw.text((120, 150 + line * 68), " ".join(WORDS[:10]), font=font, fill=0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    document = pymupdf.open()
    for _ in range(pages):
        page = document.new_page(width=PAGE_PX[0] * 72 / DPI, height=PAGE_PX[1] * 72 / DPI)
        page.insert_image(page.rect, stream=buffer.getvalue())
    document.save(path)


def cells() -> list[dict[str, object]]:
    """Three blocks of ten lines, as a layout model would box them."""
    return [
        {
            "bbox": [120, 150 + block * 680, 1500, 150 + block * 680 + 660],
            "category": "Text",
            "text": "\n".join(" ".join(WORDS[:10]) for _ in range(10)),
        }
        for block in range(3)
    ]


def pages(count: int) -> Iterator[PageWords]:
    page_cells = cells()
    return (page_words(index, *PAGE_PX, page_cells) for index in range(count))


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def measure(count: int, layout: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "scan.pdf"
        make_scan_pdf(source, count)
        limits = RenderLimits(
            dpi=DPI, max_page_pixels=40_000_000, max_source_pixels=200_000_000, max_pages=10**6
        )

        def render() -> None:
            with open_document(source, DocumentType.PDF, limits) as document:
                for index in range(count):
                    document.render(index, "L")

        target = Path(scratch) / "o.pdf"
        write_searchable_pdf(source, DocumentType.PDF, pages(1), target)  # imports and fonts: once, untimed
        figures = {
            "pdf_s": timed(lambda: write_searchable_pdf(source, DocumentType.PDF, pages(count), target))
        }
        figures["pdf_peak_rss_mb"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )  # before rendering
        figures["render_s"] = timed(render)
        figures["txt_alto_s"] = timed(
            lambda: [*document_text(pages(count)), *document_alto("s.pdf", pages(count))]
        )
        if layout:
            figures["layout_s"] = timed(lambda: list(layout_pictures(source, DocumentType.PDF, pages(count))))
        figures["pdf_mb"] = (Path(scratch) / "o.pdf").stat().st_size / 1e6
        figures["source_mb"] = source.stat().st_size / 1e6
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def report(count: int, figures: dict[str, float]) -> None:
    render = figures["render_s"] / count
    line = (
        f"{count:>5} pages: render {render * 1000:6.1f} ms/page | searchable PDF "
        f"{figures['pdf_s'] / count * 1000:6.1f} ms/page = {figures['pdf_s'] / figures['render_s']:.2f}x"
        f" | txt+alto {figures['txt_alto_s'] / figures['render_s']:.2f}x"
    )
    if "layout_s" in figures:
        line += f" | layout pictures {figures['layout_s'] / figures['render_s']:.2f}x"
    line += f" | PDF {figures['pdf_mb']:.1f} MB (source {figures['source_mb']:.1f})"
    line += f" | peak RSS: writing the PDF {figures['pdf_peak_rss_mb']:.0f} MB"
    line += f", in all {figures['peak_rss_mb']:.0f} MB"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-layout", action="store_true", help="skip the layout pictures")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, not args.no_layout)))
        return
    for count in args.pages:
        command = [sys.executable, "-m", "bench.searchable_pdf", "--one", str(count)]
        if args.no_layout or count > 200:
            command.append("--no-layout")
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        report(count, json.loads(output.splitlines()[-1]))


if __name__ == "__main__":
    main()
