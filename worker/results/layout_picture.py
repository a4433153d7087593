"""Layout pictures: the page with each cell's box, coloured by category, and its reading-order number.

What a user looks at to judge a layout model at a glance (dots.ocr ships the same drawing as
``draw_layout_on_image``). Pages are rendered again from the source, small (about 1000 px on the
long side) and saved as palette PNGs of a few tens of kilobytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ocrq.schemas import DocumentType
from ocrq.worker.documents.render import OpenedDocument, RenderLimits, open_document
from ocrq.worker.results.words import PageWords, PlacedBlock

LONG_SIDE = 1000
LABEL_SIZE = 14
FONT_FILE = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
CATEGORY_COLOURS = {
    "Title": (214, 39, 40),
    "Section-header": (255, 127, 14),
    "Text": (31, 119, 180),
    "List-item": (23, 190, 207),
    "Table": (44, 160, 44),
    "Picture": (148, 103, 189),
    "Formula": (227, 119, 194),
    "Caption": (140, 86, 75),
    "Footnote": (127, 127, 127),
    "Page-header": (188, 189, 34),
    "Page-footer": (188, 189, 34),
}
OTHER_COLOUR = (0, 0, 0)
GREYS = 64
"""Grey levels for the page itself: plenty for a picture that shows boxes, not the scan's detail."""
GREY_TO_INDEX = [round(value * (GREYS - 1) / 255) for value in range(256)]
_COLOURS = [*dict.fromkeys(CATEGORY_COLOURS.values()), OTHER_COLOUR]
PALETTE_INDEX = {name: GREYS + _COLOURS.index(colour) for name, colour in CATEGORY_COLOURS.items()}
OTHER_INDEX = GREYS + _COLOURS.index(OTHER_COLOUR)
WHITE_INDEX = GREYS - 1
PALETTE = [
    *(round(level * 255 / (GREYS - 1)) for level in range(GREYS) for _ in range(3)),
    *(channel for colour in _COLOURS for channel in colour),
]


@dataclass(frozen=True, slots=True)
class LayoutPicture:
    index: int
    png: bytes


def layout_pictures(
    source: Path, doc_type: DocumentType, pages: Iterable[PageWords]
) -> Iterator[LayoutPicture]:
    """One picture per page that has cells, rendering the source a page at a time."""
    with open_document(source, doc_type, _limits(LONG_SIDE * LONG_SIDE)) as document:
        for page in pages:
            if page.blocks and page.index < document.page_count:
                yield LayoutPicture(page.index, layout_picture(document, page))


def layout_picture(document: OpenedDocument, page: PageWords) -> bytes:
    """The page drawn small with its cells; raises the render's InputError if the source changed."""
    document.limits = picture_limits(page)
    picture = _on_palette(document.render(page.index, "L"))
    draw_cells(picture, page)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", compress_level=6)  # optimize=True costs 3x the render
    return buffer.getvalue()


def draw_cells(image: Image.Image, page: PageWords) -> None:
    """Boxes at the image's scale, with 'N Category' labels on top of each box."""
    scale_x, scale_y = image.width / page.width, image.height / page.height
    draw = ImageDraw.Draw(image)
    width = max(2, round(image.width / 400))
    for block in page.blocks:
        x1, y1, x2, y2 = block.box
        box = (x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y)
        colour = PALETTE_INDEX.get(block.category, OTHER_INDEX)
        draw.rectangle(box, outline=colour, width=width)
        _label(draw, box, block, colour)


def _label(draw: ImageDraw.ImageDraw, box: tuple[float, ...], block: PlacedBlock, colour: int) -> None:
    text = f"{block.order} {block.category}"
    font = _font()
    left, top = box[0], max(0.0, box[1] - LABEL_SIZE - 4)
    extent = draw.textbbox((left + 3, top + 1), text, font=font)
    draw.rectangle((left, top, extent[2] + 3, extent[3] + 2), fill=colour)
    draw.text((left + 3, top + 1), text, font=font, fill=WHITE_INDEX)


def _on_palette(grey: Image.Image) -> Image.Image:
    """The grey page on a fixed palette (grey ramp, then the category colours): no quantising to pay."""
    picture = grey.point(GREY_TO_INDEX)
    picture.putpalette(PALETTE)
    return picture


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(FONT_FILE, LABEL_SIZE)
    except OSError:  # DejaVu missing: Pillow's own font still labels the boxes
        return ImageFont.load_default(LABEL_SIZE)


def picture_limits(page: PageWords) -> RenderLimits:
    """Pixels for about LONG_SIDE on the long side at the page's own proportions."""
    long, short = max(page.width, page.height), min(page.width, page.height)
    return _limits(max(10_000, round(LONG_SIDE * LONG_SIDE * short / long)))


def _limits(max_page_pixels: int) -> RenderLimits:
    return RenderLimits(
        dpi=300, max_page_pixels=max_page_pixels, max_source_pixels=200_000_000, max_pages=1_000_000
    )
