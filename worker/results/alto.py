"""ALTO XML v4, one file per document: pages, blocks, lines and words with their positions.

Archives and digital libraries load ALTO (Library of Congress, Europeana, Transkribus, eScriptorium).
Positions are in pixels of the page as OCRed (``MeasurementUnit`` pixel), one frame per page.
A layout category is a ``LayoutTag`` the block refers to, so Title, Table or Formula survive;
a picture is an ``Illustration``. Written a page at a time, so a long document is never whole
in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from xml.sax.saxutils import quoteattr

from ocrq.schemas import LAYOUT_CATEGORIES
from ocrq.worker.results.words import Box, PageWords, PlacedBlock, PlacedLine

ALTO_NAMESPACE = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_SCHEMA = "http://www.loc.gov/standards/alto/v4/alto-4-3.xsd"
SOFTWARE = "ocrq"


def document_alto(file_name: str, pages: Iterable[PageWords], engines: str = "") -> Iterator[str]:
    """The ALTO document as text parts, the header first, then each page as it comes."""
    yield _header(file_name, engines)
    for page in pages:
        yield _page(page)
    yield "  </Layout>\n</alto>\n"


def _header(file_name: str, engines: str) -> str:
    tags = "".join(
        f'    <LayoutTag ID="{_tag_id(name)}" TYPE="structure" LABEL="{name}"/>\n'
        for name in LAYOUT_CATEGORIES
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<alto xmlns="{ALTO_NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        f' xsi:schemaLocation="{ALTO_NAMESPACE} {ALTO_SCHEMA}">\n'
        "  <Description>\n    <MeasurementUnit>pixel</MeasurementUnit>\n"
        f"    <sourceImageInformation><fileName>{_escape(file_name)}</fileName></sourceImageInformation>\n"
        '    <OCRProcessing ID="OCR_0"><ocrProcessingStep><processingSoftware>'
        f"<softwareName>{SOFTWARE}</softwareName>"
        f"<applicationDescription>{_escape(engines or 'ocrq')}</applicationDescription>"
        "</processingSoftware></ocrProcessingStep></OCRProcessing>\n  </Description>\n"
        f"  <Tags>\n{tags}  </Tags>\n  <Layout>\n"
    )


def _page(page: PageWords) -> str:
    number = page.index + 1
    blocks = "".join(_block(number, block) for block in page.blocks)
    return (
        f'    <Page ID="p{number}" PHYSICAL_IMG_NR="{number}" WIDTH="{page.width}" HEIGHT="{page.height}">\n'
        f'      <PrintSpace HPOS="0" VPOS="0" WIDTH="{page.width}" HEIGHT="{page.height}">\n'
        f"{blocks}      </PrintSpace>\n    </Page>\n"
    )


def _block(page_number: int, block: PlacedBlock) -> str:
    block_id = f"p{page_number}_b{block.order}"
    common = f'ID="{block_id}" {_position(block.box)} TAGREFS="{_tag_id(block.category)}"'
    if not block.lines:
        kind = "Illustration" if block.category == "Picture" else "GraphicalElement"
        return f"        <{kind} {common}/>\n"
    lines = "".join(_line(f"{block_id}_l{n}", line) for n, line in enumerate(block.lines, 1))
    return f"        <TextBlock {common}>\n{lines}        </TextBlock>\n"


def _line(line_id: str, line: PlacedLine) -> str:
    parts = []
    for number, word in enumerate(line.words, 1):
        if number > 1:
            parts.append("<SP/>")
        parts.append(
            f'<String ID="{line_id}_w{number}" {_position(word.box)} CONTENT={quoteattr(word.text)}/>'
        )
    return f'          <TextLine ID="{line_id}" {_position(line.box)}>{"".join(parts)}</TextLine>\n'


def _position(box: Box) -> str:
    x1, y1, x2, y2 = box
    return f'HPOS="{x1:.0f}" VPOS="{y1:.0f}" WIDTH="{max(x2 - x1, 1):.0f}" HEIGHT="{max(y2 - y1, 1):.0f}"'


def _tag_id(category: str) -> str:
    return "LT_" + category.replace("-", "_")


def _escape(text: str) -> str:
    return quoteattr(text)[1:-1]
