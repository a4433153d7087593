"""``<path>.txt``: the document's words in reading order, a form feed between pages.

Built from the same placed words as the searchable PDF and ALTO, so a text extracted from the
PDF reads like this file. A failed page is an empty page here: its place (and count) is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ocrq.worker.results.words import PageWords

PAGE_BREAK = "\f"


def document_text(pages: Iterable[PageWords]) -> Iterator[str]:
    """Page texts with form feeds between them, one page at a time."""
    for number, page in enumerate(pages):
        yield (PAGE_BREAK if number else "") + page.text + ("\n" if page.blocks else "")
    yield "\n"
