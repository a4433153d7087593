"""One model answer read into cells, text and Markdown, with the verdicts the retry ladder needs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ocrq.schemas import LayoutCell, PageResult, PageTask, PromptMode
from ocrq.worker.ocr_output.grounding import parse_grounding
from ocrq.worker.ocr_output.layout import parse_layout
from ocrq.worker.ocr_output.loops import DEFAULT_LIMITS, LoopLimits, cut_loop, find_loop, find_tail_loop
from ocrq.worker.ocr_output.markdown import cells_markdown, cells_text
from ocrq.worker.ocr_output.resize import ResizePlan


@dataclass(slots=True)
class Reading:
    text: str
    markdown: str
    cells: list[LayoutCell] = field(default_factory=list)
    """In page pixels."""
    truncated: bool = False
    """The generation hit ``max_tokens`` (``finish_reason == "length"``)."""
    looped: bool = False
    repaired: bool = False
    """Layout JSON needed repair (invalid, truncated or duplicated cells)."""

    @property
    def clean(self) -> bool:
        """Nothing to retry for: complete and not looping."""
        return not (self.truncated or self.looped or self.repaired)

    @property
    def usable(self) -> bool:
        return bool(self.text.strip() or self.cells)


def read_layout(
    raw: str,
    finish_reason: str | None,
    plan: ResizePlan,
    drop_page_furniture: bool = False,
    limits: LoopLimits = DEFAULT_LIMITS,
) -> Reading:
    """dots.ocr layout JSON → page-pixel cells; a loop inside the JSON shows as a tail loop too."""
    parsed = parse_layout(raw)
    cells = [LayoutCell(plan.to_page(cell.bbox), cell.category, cell.text) for cell in parsed.cells]
    return Reading(
        text=cells_text(cells, drop_page_furniture),
        markdown=cells_markdown(cells, drop_page_furniture),
        cells=cells,
        truncated=finish_reason == "length",
        looped=find_tail_loop(raw, limits) is not None,
        repaired=parsed.repaired or not cells,
    )


def read_grounding(
    raw: str,
    finish_reason: str | None,
    plan: ResizePlan,
    drop_page_furniture: bool = False,
    limits: LoopLimits = DEFAULT_LIMITS,
) -> Reading:
    """DeepSeek-OCR's grounded Markdown → page-pixel cells; without tags it is read as plain text."""
    parsed = parse_grounding(raw, plan)
    if not parsed.cells:
        return read_text(parsed.markdown, finish_reason, limits)
    return Reading(
        text=cells_text(parsed.cells, drop_page_furniture),
        markdown=cells_markdown(parsed.cells, drop_page_furniture),
        cells=parsed.cells,
        truncated=finish_reason == "length",
        looped=find_loop(raw, limits) is not None,
        repaired=parsed.broken_tags > 0,
    )


def read_text(raw: str, finish_reason: str | None, limits: LoopLimits = DEFAULT_LIMITS) -> Reading:
    """Free text (text-only prompts, non-layout models); a loop is cut off, keeping one repeat."""
    loop = find_loop(raw, limits)
    text = cut_loop(raw, loop) if loop else raw.strip()
    return Reading(text=text, markdown=text, truncated=finish_reason == "length", looped=loop is not None)


def page_result(
    reading: Reading,
    task: PageTask,
    *,
    engine: str,
    model: str,
    tokens: tuple[int | None, int | None],
    started: float,
) -> PageResult:
    """The engine-neutral answer for a page; a grounding read without cells gets its region as one."""
    cells = reading.cells
    if task.mode is PromptMode.GROUNDING and task.bbox is not None and not cells and reading.text:
        cells = [LayoutCell(task.bbox, "Text", reading.text)]
    return PageResult(
        text=reading.text,
        markdown=reading.markdown,
        engine=engine,
        model=model,
        cells=cells,
        tokens_in=tokens[0],
        tokens_out=tokens[1],
        ocr_ms=(time.perf_counter() - started) * 1000,
    )
