"""What a PDF page should say about damage: MuPDF's complaints while drawing it, a repaired file.

MuPDF repairs what it can and draws what it finds, warning instead of failing; those warnings
are the only sign that a page lost content, so they become notes on the page (a warning note
makes its document ``partial``).
"""

from __future__ import annotations

import pymupdf
from PIL import Image

from ocrq.schemas import PageNote

DAMAGED_SOURCE = "damaged_source"
"""Warning code of a page that MuPDF drew with errors, or that comes from a truncated file."""
MAX_NOTED_COMPLAINTS = 3
HARMLESS_COMPLAINTS = ("FT_", "... repeated")
"""MuPDF messages that lose nothing: FreeType metrics of a glyph a subset font lacks (TeX PDFs
ask for glyph 3 of every font), and MuPDF's own repeat counter."""


def damage_notes(file_damage: PageNote | None, complaints: str) -> list[PageNote]:
    """The file's own note, and a ``damaged_source`` warning when MuPDF complained about this page."""
    notes = [file_damage] if file_damage else []
    said = list(dict.fromkeys(line for line in complaints.splitlines() if _is_damage(line)))
    if said:
        shown = "; ".join(said[:MAX_NOTED_COMPLAINTS]) + ("; ..." if len(said) > MAX_NOTED_COMPLAINTS else "")
        notes.append(PageNote(DAMAGED_SOURCE, f"MuPDF drew this page with errors: {shown}", warning=True))
    return notes


def _is_damage(complaint: str) -> bool:
    return bool(complaint.strip()) and not complaint.startswith(HARMLESS_COMPLAINTS)


def whole_file_damage(document: pymupdf.Document, has_trailer: bool) -> PageNote | None:
    """What every page of a repaired file should say; None for a sound file.

    A repaired file without its end-of-file marker was cut short: any page may
    miss fonts or images that lived in the lost part, even where MuPDF says
    nothing, so that is a warning. A complete file with a broken cross-reference
    table (rebuilt by scanning the objects) only gets an informative note.
    """
    if not document.is_repaired:
        return None
    if not has_trailer:
        message = (
            f"the file is truncated (no %%EOF); MuPDF repaired it and recovered {document.page_count} page(s)"
        )
        return PageNote(DAMAGED_SOURCE, message, warning=True)
    complaints = pymupdf.TOOLS.mupdf_warnings(reset=True).splitlines()
    detail = f" ({complaints[0]})" if complaints else ""
    return PageNote(
        "source_repaired", f"the file's cross-references were damaged; MuPDF repaired them{detail}"
    )


def scale_notes(image: Image.Image, dpi: int) -> list[PageNote]:
    """A ``scale_note`` when the page was shrunk below the job's DPI to fit the pixel cap."""
    shown = image.info.get("dpi", (dpi, dpi))[0]
    if shown >= dpi - 0.5:
        return []
    message = (
        f"rendered at {shown:.0f} dpi instead of {dpi} to fit OCRQ_MAX_PAGE_PIXELS; small text may be lost"
    )
    return [PageNote("scale_note", message)]
