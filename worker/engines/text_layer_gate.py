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


@dataclass(frozen=True, slots=True)
class LayerVerdict:
    accepted: bool
    reason: str
    """Short machine-readable reason: ``born_digital``, ``no_text``, ``invisible_text`` ..."""
    detail: str

    def note(self) -> PageNote:
        code = ACCEPTED if self.accepted else REJECTED
        return PageNote(code, f"{self.reason}: {self.detail}")


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
    return _judge_characters(chars) or _judge_images(page, chars) or _accepted(chars)


def _judge_sparse(page: pymupdf.Page, chars: str) -> LayerVerdict:
    """Little or no text: trusted only when nothing else is drawn that OCR could read."""
    if not page.get_image_info() and not page.get_cdrawings():
        return LayerVerdict(True, "text_only", f"{len(chars)} characters and no images or drawings")
    return LayerVerdict(False, "no_text", f"{len(chars)} characters of text over images or drawings")


def _judge_characters(chars: str) -> LayerVerdict | None:
    unmapped = _unmapped_share(chars)
    if unmapped > UNMAPPED_SHARE:
        return LayerVerdict(False, "unmapped_glyphs", f"{unmapped:.0%} of characters are unmapped glyphs")
    mojibake = _mojibake_share(chars)
    if mojibake > MOJIBAKE_SHARE:
        return LayerVerdict(
            False, "mojibake", f"{mojibake:.0%} of letters are Latin-1 stand-ins (8-bit font, no ToUnicode)"
        )
    word_chars = sum(1 for char in chars if char.isalnum()) / len(chars)
    if word_chars < MIN_WORD_CHAR_SHARE:
        return LayerVerdict(False, "mostly_symbols", f"only {word_chars:.0%} letters and digits")
    return None


def _judge_images(page: pymupdf.Page, chars: str) -> LayerVerdict | None:
    coverage = _image_coverage(page)
    if coverage > SCAN_IMAGE_COVERAGE and len(chars) < SCAN_TEXT_CHARS:
        return LayerVerdict(
            False, "scan", f"{len(chars)} characters over an image covering {coverage:.0%} of the page"
        )
    return None


def _accepted(chars: str) -> LayerVerdict:
    return LayerVerdict(True, "born_digital", f"{len(chars)} visible characters")


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
