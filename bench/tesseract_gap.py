"""CER of Tesseract run directly against Tesseract through ocrq, on a corpus scan in four turns.

    .venv/bin/python -m bench.tesseract_gap [--turns 0,90,180,270]

The scan is ``ru-debian-faq-p10-scan.png`` (300 dpi grey, Russian) from ../shared/corpus, turned
in memory. "cli" is ``tesseract FILE - -l rus+eng --psm 1`` (the system binary), "lib psm1" is
the same call through tesserocr's bundled library (the one ocrq links), "ocrq" is the page
rendered by ocrq's document reader and read by its Tesseract engine. CER is whitespace-normalised
against the ``.gt.txt`` (the source page's text layer).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import tesserocr
from PIL import Image
from rapidfuzz.distance import Levenshtein

from ocrq.schemas import DocumentType, PageTask
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.engines.tessdata import require_languages
from ocrq.worker.engines.tesseract import TesseractEngine

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SCAN = "ru-debian-faq-p10-scan.png"
LANGS = "rus+eng"


def cer(text: str, truth: str) -> float:
    ours, theirs = " ".join(text.split()), " ".join(truth.split())
    return Levenshtein.distance(ours, theirs) / max(len(theirs), 1)


def cli_text(path: Path) -> str:
    command = ["tesseract", str(path), "-", "-l", LANGS, "--psm", "1"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def library_text(path: Path) -> str:
    tessdata = require_languages(LANGS, None, True)
    with tesserocr.PyTessBaseAPI(path=f"{tessdata}/", lang=LANGS, psm=tesserocr.PSM.AUTO_OSD) as api:
        api.SetImageFile(str(path))
        return api.GetUTF8Text()


def ocrq_text(path: Path, engine: TesseractEngine) -> str:
    limits = RenderLimits(dpi=200, max_page_pixels=40_000_000, max_source_pixels=200_000_000, max_pages=10)
    with open_document(path, DocumentType.PNG, limits) as document:
        page = document.render(0, engine.image_mode)
    return engine.recognize(page, PageTask()).text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", default="0,90,180,270")
    turns = [int(turn) for turn in parser.parse_args().turns.split(",")]
    truth = (CORPUS / SCAN.replace(".png", ".gt.txt")).read_text(encoding="utf-8")
    engine = TesseractEngine(LANGS)
    system = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split()[1]
    library = tesserocr.tesseract_version().split()[1]
    print(f"tesseract library {library} (ocrq), system binary {system}; {SCAN}")
    print(f"{'turn':>5} {'cli':>7} {'lib psm1':>9} {'ocrq':>7} {'ocrq-cli':>9} {'ocrq s':>7}")
    with tempfile.TemporaryDirectory() as scratch:
        for turn in turns:
            path = Path(scratch) / f"turned-{turn}.png"
            image = Image.open(CORPUS / SCAN)
            (image.rotate(turn, expand=True) if turn else image).save(path)
            direct, library = cer(cli_text(path), truth), cer(library_text(path), truth)
            started = time.perf_counter()
            through = cer(ocrq_text(path, engine), truth)
            seconds = time.perf_counter() - started
            gap = (through - direct) * 100
            print(f"{turn:>5} {direct:7.2%} {library:9.2%} {through:7.2%} {gap:+8.2f}pt {seconds:7.1f}")
    engine.close()


if __name__ == "__main__":
    main()
