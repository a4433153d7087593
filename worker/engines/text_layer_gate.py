"""Whether a PDF page's own text can be trusted instead of OCRing a picture of it.

A text layer is exact when the page was typeset, and worthless in several common cases that
look like text to a extractor: a scan with a few words of header over the image, somebody's
earlier OCR drawn invisibly (render mode 3, often poor), 8-bit Cyrillic fonts without a
ToUnicode map whose text comes out as Latin-1 letters (``Ïðèâåò`` for ``Привет``), and glyphs
MuPDF could not map (``(cid:12)``, U+FFFD, private-use code points). Each rejection names its
reason, so a user can see why a page was OCRed after all.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import pymupdf

from ocrq.schemas import PageNote

MIN_TRUSTED_CHARS = 20
"""Fewer visible characters than this is no layer to speak of (a page number, a stamp)."""
SCAN_IMAGE_COVERAGE = 0.5
"""An image over more of the page than this, with little text, is a scanned page."""
SCAN_TEXT_CHARS = 200
INVISIBLE_SHARE = 0.5
UNMAPPED_SHARE = 0.1
"""Typeset maths has a few (bracket pieces in private use, TeX accents as control codes)."""
MOJIBAKE_SHARE = 0.3
"""Share of letters in Latin-1's accented range (À..ÿ) above which the text is 8-bit Cyrillic read as
Latin-1: German or French text has a few percent; cp1251 Russian read as Latin-1 has nearly all."""
MIN_WORD_CHAR_SHARE = 0.4
"""Letters and digits among visible characters; symbol soup from a font without a usable encoding."""

ACCEPTED, REJECTED = "text_layer_used", "text_layer_rejected"


DOUBTFUL_INVISIBLE = 0.25
DOUBTFUL_UNMAPPED = 0.05
DOUBTFUL_MOJIBAKE = 0.15
DOUBTFUL_WORD_CHARS = 0.45
"""Past these (short of rejection) the layer is checked against OCR of the page before it is used.
A table of contents full of dot leaders has about 70% letters and digits, a page of maths 50%, prose 85%."""


@dataclass(frozen=True, slots=True)
class LayerVerdict:
    accepted: bool
    reason: str
    """Short machine-readable reason: ``born_digital``, ``no_text``, ``invisible_text`` ..."""
    detail: str
    doubt: str | None = None
    """Why an accepted layer should be checked against OCR of the page before it is trusted."""

    def note(self) -> PageNote:
        code = ACCEPTED if self.accepted else REJECTED
        doubt = f"; doubtful ({self.doubt})" if self.doubt else ""
        return PageNote(code, f"{self.reason}: {self.detail}{doubt}")


@dataclass(frozen=True, slots=True)
class LayerStats:
    """What the gate measures on a page's text; shares are fractions."""

    chars: int
    invisible: float
    unmapped: float
    mojibake: float
    word_chars: float
    image_coverage: float


def judge_layer(page: pymupdf.Page, text: str) -> LayerVerdict:
    """Accept the page's text layer, or reject it with the first reason that applies."""
    chars = "".join(text.split())
    invisible = _invisible_share(page) if chars else 0.0
    if invisible > INVISIBLE_SHARE:
        return LayerVerdict(
            False, "invisible_text", f"{invisible:.0%} of the text is invisible (earlier OCR)"
        )
    if len(chars) < MIN_TRUSTED_CHARS:
        return _judge_sparse(page, chars)
    stats = LayerStats(
        len(chars),
        invisible,
        _unmapped_share(chars),
        _mojibake_share(chars),
        sum(1 for char in chars if char.isalnum()) / len(chars),
        _image_coverage(page),
    )
    return _rejection(stats) or LayerVerdict(True, "born_digital", f"{len(chars)} characters", _doubt(stats))


def _judge_sparse(page: pymupdf.Page, chars: str) -> LayerVerdict:
    """Little or no text: trusted only when nothing else is drawn that OCR could read."""
    if not page.get_image_info() and not page.get_cdrawings():
        return LayerVerdict(True, "text_only", f"{len(chars)} characters and no images or drawings")
    return LayerVerdict(False, "no_text", f"{len(chars)} characters of text over images or drawings")


def _rejection(stats: LayerStats) -> LayerVerdict | None:
    if stats.unmapped > UNMAPPED_SHARE:
        return LayerVerdict(
            False, "unmapped_glyphs", f"{stats.unmapped:.0%} of characters are unmapped glyphs"
        )
    if stats.mojibake > MOJIBAKE_SHARE:
        detail = f"{stats.mojibake:.0%} of letters are Latin-1 stand-ins (8-bit font, no ToUnicode)"
        return LayerVerdict(False, "mojibake", detail)
    if stats.word_chars < MIN_WORD_CHAR_SHARE:
        return LayerVerdict(False, "mostly_symbols", f"only {stats.word_chars:.0%} letters and digits")
    if stats.image_coverage > SCAN_IMAGE_COVERAGE and stats.chars < SCAN_TEXT_CHARS:
        detail = f"{stats.chars} characters over an image covering {stats.image_coverage:.0%} of the page"
        return LayerVerdict(False, "scan", detail)
    return None


def _doubt(stats: LayerStats) -> str | None:
    """Signs short of rejection: the layer is compared with OCR of the page before it is used."""
    doubts = [
        (stats.invisible > DOUBTFUL_INVISIBLE, f"{stats.invisible:.0%} invisible"),
        (stats.unmapped > DOUBTFUL_UNMAPPED, f"{stats.unmapped:.0%} unmapped glyphs"),
        (stats.mojibake > DOUBTFUL_MOJIBAKE, f"{stats.mojibake:.0%} Latin-1 stand-ins"),
        (stats.word_chars < DOUBTFUL_WORD_CHARS, f"{stats.word_chars:.0%} letters and digits"),
        (stats.image_coverage > SCAN_IMAGE_COVERAGE, f"over an image covering {stats.image_coverage:.0%}"),
    ]
    said = [reason for doubtful, reason in doubts if doubtful]
    return ", ".join(said) or None


AGREEMENT_NEEDED = 0.6
"""Share of the OCR's words that must be in a doubtful layer for the layer to be used."""


def layer_agreement(layer_text: str, ocr_text: str) -> float:
    """The smaller of: the OCR's words the layer has, and the layer's words the OCR found.

    Words of three letters or more; both ways, because a layer can miss what the page shows
    (a pasted scan) or hold what it does not show (invisible text).
    """
    return min(_found_in(_words(ocr_text), layer_text), _found_in(_words(layer_text), ocr_text))


def _found_in(words: list[str], other_text: str) -> float:
    if not words:
        return 1.0
    other = set(_words(other_text))
    return sum(1 for word in words if word in other) / len(words)


def _words(text: str) -> list[str]:
    cleaned = ("".join(char for char in word if char.isalnum()).lower() for word in text.split())
    return [word for word in cleaned if len(word) >= 3]


def _invisible_share(page: pymupdf.Page) -> float:
    """Characters drawn in render mode 3 or fully transparent, among all drawn characters."""
    total = hidden = 0
    for span in page.get_texttrace():
        count = len(span["chars"])
        total += count
        if span["type"] == 3 or span["opacity"] == 0:
            hidden += count
    return hidden / total if total else 0.0


def _unmapped_share(chars: str) -> float:
    """U+FFFD, private-use and control characters, and MuPDF's ``(cid:N)`` stand-ins."""
    bad = sum(1 for char in chars if char == "\ufffd" or unicodedata.category(char) in ("Co", "Cc"))
    bad += 6 * chars.count("(cid:")
    return bad / len(chars)


def _mojibake_share(chars: str) -> float:
    letters = [char for char in chars if char.isalpha()]
    if not letters:
        return 0.0
    latin1_accented = sum(1 for char in letters if "\u00c0" <= char <= "\u00ff")
    return latin1_accented / len(letters)


def _image_coverage(page: pymupdf.Page) -> float:
    """Share of the page under its largest image (overlapping images are not added twice)."""
    unrotated = pymupdf.Rect(0, 0, page.cropbox.width, page.cropbox.height)  # the frame images are in
    area = abs(unrotated)
    if not area:
        return 0.0
    boxes = [pymupdf.Rect(info["bbox"]) & unrotated for info in page.get_image_info()]
    return max((abs(box) / area for box in boxes if not box.is_empty), default=0.0)
