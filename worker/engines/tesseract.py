"""Tesseract through tesserocr: the engine that needs no GPU and no server.

A ``PyTessBaseAPI`` holds loaded models and is not thread-safe, while loading
one costs far more than a page, so each page-worker thread gets its own,
created on first use and kept until :meth:`TesseractEngine.close`.

Sideways scans are turned upright before reading
(:mod:`ocrq.worker.engines.tesseract_orientation`): Tesseract's own ``PSM.AUTO_OSD``
read a turned scan two CER points worse than the same scan upright. Boxes are
mapped back to the frame of the image the engine was given.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from PIL import Image

from ocrq.errors import EngineFailed, EngineUnavailable, InputError, PageRenderError
from ocrq.schemas import LayoutCell, PageResult, PageTask, PromptMode, TextLine, Word
from ocrq.settings import Settings
from ocrq.worker.engines.tessdata import require_languages, split_langs
from ocrq.worker.engines.tesseract_orientation import TURNS, cells_turned_back, detect, turned

try:
    import tesserocr
except ImportError:  # an optional engine: the chain skips it rather than failing to import
    tesserocr = None

_CATEGORY_BY_BLOCK_NAME = {
    "UNKNOWN": "Text",
    "FLOWING_TEXT": "Text",
    "VERTICAL_TEXT": "Text",
    "PULLOUT_TEXT": "Text",
    "HEADING_TEXT": "Section-header",
    "CAPTION_TEXT": "Caption",
    "TABLE": "Table",
    "EQUATION": "Formula",
    "INLINE_EQUATION": "Formula",
    "FLOWING_IMAGE": "Picture",
    "HEADING_IMAGE": "Picture",
    "PULLOUT_IMAGE": "Picture",
}
"""Tesseract block types in dots.ocr's categories; rules and noise are left out, so they are dropped."""

BLOCK_CATEGORIES: dict[int, str] = (
    {getattr(tesserocr.PT, name): category for name, category in _CATEGORY_BY_BLOCK_NAME.items()}
    if tesserocr
    else {}
)

_ANGLE_BY_ORIENTATION = (
    {
        tesserocr.Orientation.PAGE_RIGHT: 270,
        tesserocr.Orientation.PAGE_DOWN: 180,
        tesserocr.Orientation.PAGE_LEFT: 90,
    }
    if tesserocr
    else {}
)
"""Where a line's top points, as the counter-clockwise turn of its text (sideways scans read by OSD)."""

_CREDIBLE_DPI = range(70, 2401)
SIDEWAYS_PENALTY = -50
"""Confidence taken off a turn whose lines come out vertical (see :func:`_lines_run_across`)."""
ASSUMED_SCAN_DPI = 300
"""For images without a credible DPI tag: the usual resolution of office scans."""
"""Image DPI tags outside this are bogus (1x1 is common) and would mislead Tesseract's size heuristics."""


def _cpu_cores() -> int:
    """Cores this process may run on: in a container that is fewer than the host has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def tesseract_available(settings: Settings) -> bool:
    """Cheap check (no model loading) so callers can leave Tesseract out of a chain up front."""
    if tesserocr is None:
        return False
    try:
        require_languages(
            settings.tesseract_langs, settings.tessdata_dir, settings.tesseract_detect_orientation
        )
    except EngineUnavailable:
        return False
    return True


class TesseractEngine:
    """The :class:`~ocrq.worker.engines.base.Engine` for Tesseract 5 (one model set per thread)."""

    name = "tesseract"
    image_mode = "L"

    def __init__(
        self,
        langs: str = "rus+eng",
        tessdata_dir: Path | None = None,
        detect_orientation: bool = True,
        max_in_flight: int | None = None,
    ) -> None:
        if tesserocr is None:
            raise EngineUnavailable("tesserocr is not installed (pip install tesserocr)")
        self.tessdata_dir = require_languages(langs, tessdata_dir, detect_orientation)
        self.langs = "+".join(split_langs(langs))
        self.detect_orientation = detect_orientation
        self.model = f"tesseract-{tesserocr.PyTessBaseAPI.Version()}:{self.langs}"
        self.max_in_flight = max_in_flight or _cpu_cores()
        self._psm = tesserocr.PSM.AUTO
        self._local = threading.local()
        self._lock = threading.Lock()
        self._apis: list[tesserocr.PyTessBaseAPI] = []
        self._closed = False
        self._thread_api()  # a corrupt model fails here, where the chain can still skip the engine

    @classmethod
    def from_settings(cls, settings: Settings) -> TesseractEngine:
        return cls(settings.tesseract_langs, settings.tessdata_dir, settings.tesseract_detect_orientation)

    def recognize(self, image: Image.Image, task: PageTask) -> PageResult:
        """OCR one page on this thread's own API; never raises anything but ocrq errors."""
        started = time.perf_counter()
        page = _as_gray(image)
        api = self._thread_api()
        try:
            cells = self._read_upright(api, page, task)
        except RuntimeError as error:
            raise EngineFailed(f"tesseract failed on a {page.width}x{page.height} page: {error}") from error
        finally:
            api.Clear()  # drop the page image and results now, not when this thread's next page comes
        return self._result(cells, started)

    def _read_upright(
        self, api: tesserocr.PyTessBaseAPI, page: Image.Image, task: PageTask
    ) -> list[LayoutCell]:
        """Read the page turned upright by OSD, or in the four turns when OSD is unsure (little text)."""
        if not self.detect_orientation or task.mode is PromptMode.GROUNDING:
            return _read(api, page, task)
        found = detect(self._thread_api("osd"), page, _source_dpi(page) or ASSUMED_SCAN_DPI)
        if found is not None and (found.sure or task.mode is PromptMode.LAYOUT_ONLY):
            return cells_turned_back(_read(api, turned(page, found.turn), task), found.turn, page.size)
        if task.mode is PromptMode.LAYOUT_ONLY:
            return _read(api, page, task)
        return _best_turn(api, page, task)

    def close(self) -> None:
        """Free every thread's models; call once no page is in flight. Safe to call again."""
        with self._lock:
            apis, self._apis, self._closed = self._apis, [], True
        for api in apis:
            api.End()

    def _thread_api(self, purpose: str = "read") -> tesserocr.PyTessBaseAPI:
        """This thread's API for reading, or for orientation detection (``"osd"``, its own model)."""
        api = getattr(self._local, purpose, None)
        if self._closed:
            raise EngineUnavailable("the tesseract engine is closed")
        if api is None:
            api = self._open_api(purpose)
            setattr(self._local, purpose, api)
        return api

    def _open_api(self, purpose: str) -> tesserocr.PyTessBaseAPI:
        """Load models under the lock so close() never misses an API being born."""
        lang, psm = ("osd", tesserocr.PSM.OSD_ONLY) if purpose == "osd" else (self.langs, self._psm)
        with self._lock:
            if self._closed:
                raise EngineUnavailable("the tesseract engine is closed")
            try:
                api = tesserocr.PyTessBaseAPI(path=f"{self.tessdata_dir}/", lang=lang, psm=psm)
            except RuntimeError as error:
                raise EngineUnavailable(
                    f"tesseract could not load {lang} from {self.tessdata_dir}: {error}"
                ) from error
            self._apis.append(api)
        return api

    def _result(self, cells: list[LayoutCell], started: float) -> PageResult:
        return PageResult(
            text="\n\n".join(cell.text for cell in cells if cell.text),
            markdown=_markdown(cells),
            engine=self.name,
            model=self.model,
            cells=cells,
            ocr_ms=(time.perf_counter() - started) * 1000,
        )


def _as_gray(image: Image.Image) -> Image.Image:
    """Pillow decodes lazily, so a damaged page can first fail here: that is the page's fault."""
    try:
        return image if image.mode == "L" else image.convert("L")
    except (OSError, ValueError) as error:
        raise PageRenderError(f"page image cannot be read: {error}") from error


def _read(api: tesserocr.PyTessBaseAPI, page: Image.Image, task: PageTask) -> list[LayoutCell]:
    if task.mode is PromptMode.GROUNDING:
        return _ground(api, page, task.bbox)
    _set_page(api, page)
    if task.mode is PromptMode.LAYOUT_ONLY:
        return _cells(api.AnalyseLayout(), page.size, with_text=False)  # layout analysis only: much cheaper
    if not api.Recognize():
        raise EngineFailed(f"tesseract could not recognize a {page.width}x{page.height} page")
    cells = _cells(api.GetIterator(), page.size, with_text=True)
    return _with_lines(cells, _lines(api.GetIterator(), page.size))


def _best_turn(api: tesserocr.PyTessBaseAPI, page: Image.Image, task: PageTask) -> list[LayoutCell]:
    """The page read in each of the four turns; the turn whose words Tesseract trusts most wins."""
    best: tuple[int, int, list[LayoutCell]] | None = None
    for turn in TURNS:
        cells = _read(api, turned(page, turn), task)
        confidence = (
            api.MeanTextConf() + (0 if _lines_run_across(cells) else SIDEWAYS_PENALTY) if cells else -1
        )
        if best is None or confidence > best[0]:
            best = (confidence, turn, cells)
    assert best is not None
    return cells_turned_back(best[2], best[1], page.size)


def _lines_run_across(cells: list[LayoutCell]) -> bool:
    """Whether the lines read are horizontal: Tesseract also reads a single sideways line as
    vertical text, as confidently, but that is the page turned the wrong way."""
    boxes = [line.bbox for cell in cells for line in cell.lines]
    return sum(b[2] - b[0] for b in boxes) >= sum(b[3] - b[1] for b in boxes)


def _set_page(api: tesserocr.PyTessBaseAPI, page: Image.Image) -> None:
    """Always state a resolution: left unset after ``SetImage``, Tesseract 5.5 silently drops
    whole text blocks (a third of a 300 dpi Russian scan in the corpus), while any explicit value works."""
    api.SetImage(page)
    api.SetSourceResolution(_source_dpi(page) or ASSUMED_SCAN_DPI)


def _source_dpi(image: Image.Image) -> int | None:
    """A real DPI tag helps Tesseract size text; without one it estimates from x-height."""
    try:
        value = round(float(image.info["dpi"][0]))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return value if value in _CREDIBLE_DPI else None


def _ground(
    api: tesserocr.PyTessBaseAPI, page: Image.Image, bbox: tuple[int, int, int, int] | None
) -> list[LayoutCell]:
    """OCR a cropped copy: SetRectangle misreads a rectangle spanning the full image width (5.5.4)."""
    region = _region(bbox, page.size)
    _set_page(api, page.crop(region))
    text = _clean(api.GetUTF8Text())
    return [LayoutCell(region, "Text", text)] if text else []


def _region(bbox: tuple[int, int, int, int] | None, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The grounding box clipped to the page; no box means the whole page."""
    if bbox is None:
        return (0, 0, *size)
    region = _clamp(bbox, size)
    if region[2] <= region[0] or region[3] <= region[1]:
        raise InputError(f"grounding bbox {bbox} does not overlap the {size[0]}x{size[1]} page")
    return region


def _clamp(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    x1, y1, x2, y2 = (int(value) for value in box)
    return (min(max(x1, 0), width), min(max(y1, 0), height), min(max(x2, 0), width), min(max(y2, 0), height))


def _cells(
    iterator: tesserocr.PyPageIterator | None, size: tuple[int, int], with_text: bool
) -> list[LayoutCell]:
    """One cell per block in reading order; a blank page yields no iterator or only empty blocks."""
    if iterator is None:
        return []
    blocks = tesserocr.iterate_level(iterator, tesserocr.RIL.BLOCK)
    cells = (_cell(block, size, with_text) for block in blocks)
    return [cell for cell in cells if cell is not None]


def _cell(block: tesserocr.PyPageIterator, size: tuple[int, int], with_text: bool) -> LayoutCell | None:
    category = BLOCK_CATEGORIES.get(block.BlockType())
    box = block.BoundingBox(tesserocr.RIL.BLOCK)
    if category is None or box is None:
        return None
    bbox = _clamp(box, size)
    if category == "Picture" or not with_text:
        return LayoutCell(bbox, category)
    text = _block_text(block)
    return LayoutCell(bbox, category, text) if text else None


def _lines(iterator: tesserocr.PyResultIterator | None, size: tuple[int, int]) -> list[TextLine]:
    """Every recognised word with its box, grouped into Tesseract's text lines.

    A second walk over the same result at word level, because the block walk cannot
    descend; words are what the searchable PDF and ALTO place.
    """
    lines: list[TextLine] = []
    words: list[Word] = []
    angle = 0
    for word in tesserocr.iterate_level(iterator, tesserocr.RIL.WORD) if iterator else ():
        if word.Empty(tesserocr.RIL.WORD):
            continue  # a blank page's empty block: GetUTF8Text would raise
        if word.IsAtBeginningOf(tesserocr.RIL.TEXTLINE):
            if words:
                lines.append(_line(words, angle))
            words, angle = [], _ANGLE_BY_ORIENTATION.get(word.Orientation()[0], 0)
        box, text = word.BoundingBox(tesserocr.RIL.WORD), (word.GetUTF8Text(tesserocr.RIL.WORD) or "").strip()
        if box is not None and text:
            words.append(Word(_clamp(box, size), text))
    return [*lines, _line(words, angle)] if words else lines


def _line(words: list[Word], angle: int) -> TextLine:
    boxes = [word.bbox for word in words]
    bbox = (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
    return TextLine(bbox, tuple(words), angle)


def _with_lines(cells: list[LayoutCell], lines: list[TextLine]) -> list[LayoutCell]:
    """Each line goes to the first text cell holding its centre (blocks do not overlap in Tesseract)."""
    owned: list[list[TextLine]] = [[] for _ in cells]
    for line in lines:
        centre = ((line.bbox[0] + line.bbox[2]) / 2, (line.bbox[1] + line.bbox[3]) / 2)
        for index, cell in enumerate(cells):
            x1, y1, x2, y2 = cell.bbox
            if cell.text and x1 <= centre[0] <= x2 and y1 <= centre[1] <= y2:
                owned[index].append(line)
                break
    return [
        LayoutCell(cell.bbox, cell.category, cell.text, tuple(mine)) if mine else cell
        for cell, mine in zip(cells, owned, strict=True)
    ]


def _block_text(block: tesserocr.PyResultIterator) -> str:
    if block.Empty(tesserocr.RIL.WORD):
        return ""  # GetUTF8Text raises on a block without words instead of returning ""
    return _clean(block.GetUTF8Text(tesserocr.RIL.BLOCK))


def _clean(text: str | None) -> str:
    """Tesseract pads lines with spaces and ends blocks with blank lines; keep only the inner breaks."""
    lines = [line.rstrip() for line in (text or "").strip().splitlines()]
    return "\n".join(lines)


def _markdown(cells: list[LayoutCell]) -> str:
    return "\n\n".join(_markdown_block(cell) for cell in cells if cell.text)


def _markdown_block(cell: LayoutCell) -> str:
    text = cell.text or ""
    if cell.category == "Section-header":
        return "## " + " ".join(text.split())
    if cell.category == "Formula":
        return f"$$\n{text}\n$$"
    return text
