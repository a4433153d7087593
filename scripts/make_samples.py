"""Make the bundled sample documents the README's demo OCRs (no files are shipped).

English and Russian text pages as a born-digital PDF, a grey "scan" PNG, a
sideways JPEG and a two-frame TIFF: the input kinds ocrq handles, made here so
the repository carries no third-party documents.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

ENGLISH = [
    "Quarterly report on the archive",
    "The scanning team digitised 1,240 folders this quarter.",
    "Every page was checked against the paper original.",
]
RUSSIAN = [
    "Отчёт о работе архива",
    "За квартал отсканировано 1240 папок с документами.",
    "Каждая страница сверена с бумажным оригиналом.",
]


def text_page_image(lines: list[str], size: tuple[int, int] = (1654, 1100)) -> Image.Image:
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 44)
    for number, line in enumerate(lines):
        draw.text((120, 140 + number * 110), line, fill=20, font=font)
    return image


def write_pdf(path: Path) -> None:
    document = pymupdf.open()
    for lines in (ENGLISH, RUSSIAN):
        page = document.new_page(width=595, height=842)
        page.insert_font(fontname="dejavu", fontfile=str(FONT))
        for number, line in enumerate(lines):
            page.insert_text((60, 100 + number * 40), line, fontname="dejavu", fontsize=16)
    document.subset_fonts()
    document.save(path)


def write_samples(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scans").mkdir(exist_ok=True)
    made = [
        folder / "report-en-ru.pdf",
        folder / "scans/letter-ru.png",
        folder / "scans/sideways-en.jpg",
        folder / "scans/two-frames.tiff",
    ]
    write_pdf(made[0])
    text_page_image(RUSSIAN).save(made[1], dpi=(200, 200))
    text_page_image(ENGLISH).rotate(90, expand=True).convert("RGB").save(made[2], quality=90)
    frames = [text_page_image(ENGLISH), text_page_image(RUSSIAN)]
    frames[0].save(made[3], save_all=True, append_images=frames[1:], compression="tiff_lzw")
    return made


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "samples")
    for path in write_samples(target):
        print(path)
