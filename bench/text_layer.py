"""Pages/s, CPU per page and CER of the text-layer engine against OCR on born-digital PDFs.

    .venv/bin/python -m bench.text_layer [--ocr-pages 6] [--files debian-faq.ru.pdf,...]

Text layer: every page read with the gate, as the pipeline does (no rendering). OCR: the first
``--ocr-pages`` pages rendered at 200 dpi and read by Tesseract (rus+eng), one thread. CER is
whitespace-normalised against the corpus ``.gt.txt`` over the same pages. Ratios come from one run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pymupdf
from rapidfuzz.distance import Levenshtein

from ocrq.schemas import DocumentType, PageTask
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.engines.tesseract import TesseractEngine
from ocrq.worker.engines.text_layer import read_text_layer

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
LIMITS = RenderLimits(dpi=200, max_page_pixels=40_000_000, max_source_pixels=200_000_000, max_pages=10_000)
DEFAULT_FILES = "debian-faq.ru.pdf,nics-background-checks-2015-11.pdf,pdflatex-4-pages.pdf"


def cer(pages: list[str], truths: list[str]) -> float:
    ours, theirs = " ".join(" ".join(pages).split()), " ".join(" ".join(truths).split())
    return Levenshtein.distance(ours, theirs) / max(len(theirs), 1)


def timed(work):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    value = work()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def layer_texts(path: Path, count: int) -> list[str]:
    zoom = LIMITS.dpi / 72
    with pymupdf.open(path) as document:
        readings = [read_text_layer(document[index], zoom) for index in range(count)]
    return [reading.result.text if reading.result else "" for reading in readings]


def ocr_texts(path: Path, count: int, engine: TesseractEngine) -> list[str]:
    with open_document(path, DocumentType.PDF, LIMITS) as document:
        return [engine.recognize(document.render(index, "L"), PageTask()).text for index in range(count)]


def bench_file(name: str, ocr_pages: int, engine: TesseractEngine) -> None:
    path = CORPUS / name
    truths = (CORPUS / name.replace(".pdf", ".gt.txt")).read_text(encoding="utf-8").split("\f")
    with pymupdf.open(path) as document:
        total = document.page_count
    sample = min(ocr_pages, total)
    layer, layer_s, layer_cpu = timed(lambda: layer_texts(path, total))
    ocr, ocr_s, ocr_cpu = timed(lambda: ocr_texts(path, sample, engine))
    layer_rate, ocr_rate = total / layer_s, sample / ocr_s
    print(f"{name}: {total} pages")
    print(
        f"  text layer: {layer_rate:8.1f} pages/s  {layer_cpu / total * 1000:8.1f} ms CPU/page  "
        f"CER {cer(layer, truths):.4f} (all pages), "
        f"{cer(layer[:sample], truths[:sample]):.4f} (first {sample})"
    )
    print(
        f"  OCR       : {ocr_rate:8.2f} pages/s  {ocr_cpu / sample * 1000:8.1f} ms CPU/page  "
        f"CER {cer(ocr, truths[:sample]):.4f} (first {sample})"
    )
    print(
        f"  ratio     : text layer {layer_rate / ocr_rate:.0f}x the pages/s, "
        f"{(ocr_cpu / sample) / max(layer_cpu / total, 1e-9):.0f}x less CPU per page"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ocr-pages", type=int, default=6)
    parser.add_argument("--files", default=DEFAULT_FILES)
    arguments = parser.parse_args()
    engine = TesseractEngine("rus+eng")
    for name in arguments.files.split(","):
        bench_file(name, arguments.ocr_pages, engine)
    engine.close()


if __name__ == "__main__":
    main()
