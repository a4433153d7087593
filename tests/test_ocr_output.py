"""dots.ocr output handling: smart resize, box mapping, JSON repair, loops, Markdown (pure functions)."""

from __future__ import annotations

import json

import pytest

from ocrq.errors import InputError
from ocrq.schemas import LAYOUT_CATEGORIES, LayoutCell
from ocrq.worker.ocr_output.layout import REPEATS_TO_DROP, deduplicate, normalise_category, parse_layout
from ocrq.worker.ocr_output.loops import cut_loop, find_loop, find_ngram_loop, find_tail_loop
from ocrq.worker.ocr_output.markdown import (
    cells_markdown,
    cells_text,
    formula_markdown,
    table_text,
)
from ocrq.worker.ocr_output.reading import read_layout, read_text
from ocrq.worker.ocr_output.resize import ResizePlan, fit_within, plan_resize, smart_resize

DOTS_MIN, DOTS_MAX = 3136, 11_289_600


def cell_json(bbox: list[int], category: str, text: str | None = None) -> dict[str, object]:
    cell: dict[str, object] = {"bbox": bbox, "category": category}
    if text is not None:
        cell["text"] = text
    return cell


PAGE_CELLS = [
    cell_json([10, 5, 500, 40], "Page-header", "Annual report 2024"),
    cell_json([10, 60, 500, 100], "Title", "# Отчёт о работе"),
    cell_json([10, 110, 500, 300], "Text", "First paragraph with `$x^2$` inline."),
    cell_json(
        [10, 310, 500, 400],
        "Table",
        "<table><tr><td>a</td><td>b</td></tr><tr><td>1</td><td>2</td></tr></table>",
    ),
    cell_json([10, 410, 500, 450], "Formula", "\\[ E = mc^2 \\]"),
    cell_json([10, 460, 300, 700], "Picture"),
    cell_json([10, 760, 500, 790], "Page-footer", "Page 3"),
]


# --- smart resize -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (2338, 1654, (2352, 1652)),  # A4 at 200 DPI, per the reference's numbers
        (112, 224, (112, 224)),  # already multiples of 28
        (10, 10, (56, 56)),  # below min_pixels: scaled up
    ],
)
def test_smart_resize_matches_the_reference_rule(height: int, width: int, expected: tuple[int, int]) -> None:
    assert smart_resize(height, width, 28, DOTS_MIN, DOTS_MAX) == expected


def test_smart_resize_keeps_within_the_budget_and_on_the_grid() -> None:
    for height, width in [(7016, 4961), (3508, 2480), (1000, 30000), (299, 4001)]:
        new_h, new_w = smart_resize(height, width, 28, DOTS_MIN, 4_000_000)
        assert new_h % 28 == 0 and new_w % 28 == 0
        assert new_h * new_w <= 4_000_000
        assert abs(new_w / new_h - width / height) / (width / height) < 0.05


def test_smart_resize_refuses_extreme_aspect_and_empty_pages() -> None:
    with pytest.raises(InputError, match="aspect"):
        smart_resize(10, 2100, 28, DOTS_MIN, DOTS_MAX)
    with pytest.raises(InputError):
        smart_resize(0, 100, 28, DOTS_MIN, DOTS_MAX)


def test_fit_within_only_shrinks() -> None:
    assert fit_within(100, 200, 1_000_000) == (100, 200)
    height, width = fit_within(4000, 3000, 1_200_000)
    assert height * width <= 1_200_000 and abs(height / width - 4 / 3) < 0.01


def test_plan_maps_boxes_back_to_page_pixels() -> None:
    plan = plan_resize((1654, 2338), "smart", 28, DOTS_MIN, 1_000_000)
    assert plan.target[0] % 28 == 0 and plan.target[1] % 28 == 0
    page_box = (100, 200, 1500, 2300)
    back = plan.to_page(plan.to_model(page_box))
    assert all(abs(a - b) <= 3 for a, b in zip(back, page_box, strict=True))
    whole = plan.to_page((0, 0, plan.target[0], plan.target[1]))
    assert whole == (0, 0, 1654, 2338)


def test_a_page_within_budget_is_padded_not_resampled() -> None:
    plan = plan_resize((1654, 2338), "smart", 28, DOTS_MIN, 4_000_000)
    assert plan.padded and plan.target == (1680, 2352)
    assert plan.to_model((10, 20, 30, 40)) == (10, 20, 30, 40)
    assert plan.to_page((0, 0, 1680, 2352)) == (0, 0, 1654, 2338)  # the padding maps to the page edge
    assert plan_resize((1652, 2352), "smart", 28, DOTS_MIN, 4_000_000).identity


def test_plan_clamps_and_offsets() -> None:
    plan = ResizePlan(source=(100, 100), target=(200, 200), offset=(50, 70))
    assert plan.to_page((-10, 0, 400, 100)) == (50, 70, 150, 120)
    assert plan.to_model((60, 80, 100, 120)) == (20, 20, 100, 100)


# --- layout JSON --------------------------------------------------------------------------------


def test_valid_json_parses_every_category_without_repair() -> None:
    cells = [cell_json([i, i, i + 10, i + 10], name, f"t{i}") for i, name in enumerate(LAYOUT_CATEGORIES)]
    parsed = parse_layout(json.dumps(cells))
    assert parsed.valid_json and not parsed.repaired
    assert [c.category for c in parsed.cells] == list(LAYOUT_CATEGORIES)
    assert next(c for c in parsed.cells if c.category == "Picture").text is None


def test_truncated_output_drops_only_the_partial_last_cell() -> None:
    raw = (
        json.dumps(PAGE_CELLS[:3])[:-1]
        + ', {"bbox": [10, 310, 500, 400], "category": "Table", "text": "<table><tr>'
    )
    parsed = parse_layout(raw)
    assert not parsed.valid_json and parsed.repaired and parsed.dropped == 1
    assert [c.category for c in parsed.cells] == ["Page-header", "Title", "Text"]


def test_missing_delimiters_and_code_fences_are_repaired() -> None:
    body = "".join(json.dumps(cell) for cell in PAGE_CELLS[:3])  # no commas, no brackets
    parsed = parse_layout(f"```json\n{body}\n```")
    assert len(parsed.cells) == 3 and parsed.repaired


def test_a_lone_cut_off_cell_is_salvaged() -> None:
    raw = '[{"bbox": [1, 2, 30, 40], "category": "Text", "text": "Hello \\"wor'
    parsed = parse_layout(raw)
    assert parsed.cells == [LayoutCell((1, 2, 30, 40), "Text", 'Hello "wor')]


def test_garbage_yields_no_cells_and_never_raises() -> None:
    for raw in ["", "not json at all", "[1, 2, 3]", '{"bbox": "x"}', "[{}]", "null"]:
        assert parse_layout(raw).cells == []


def test_invalid_cells_are_dropped_and_counted() -> None:
    raw = json.dumps(
        [cell_json([0, 0, 0, 10], "Text", "zero width"), cell_json([5, 5, 1, 1], "text", "swapped")]
    )
    parsed = parse_layout(raw)
    assert parsed.dropped == 1
    assert parsed.cells == [LayoutCell((1, 1, 5, 5), "Text", "swapped")]


def test_categories_are_normalised() -> None:
    assert normalise_category("section_header") == "Section-header"
    assert normalise_category(" TABLE ") == "Table"
    assert normalise_category("Other") == "Text"
    assert normalise_category("") is None


def test_loops_of_cells_are_deduplicated_like_dots_cleaner() -> None:
    looping = [LayoutCell((0, i, 10, i + 5), "Text", "same") for i in range(REPEATS_TO_DROP)]
    kept = deduplicate(
        [LayoutCell((0, 0, 9, 9), "Title", "T"), *looping, LayoutCell((0, 0, 9, 9), "Text", "dup box")]
    )
    assert kept == [LayoutCell((0, 0, 9, 9), "Title", "T"), looping[0]]


def test_a_few_repeats_are_content_and_stay() -> None:
    cells = [LayoutCell((0, i * 10, 10, i * 10 + 5), "Text", "Итого") for i in range(REPEATS_TO_DROP - 1)]
    assert deduplicate(cells) == cells


# --- loops -------------------------------------------------------------------------------------


def test_tail_loop_found_with_a_partial_last_unit() -> None:
    text = "Intro text. " + "<td></td>" * 60 + "<td></"
    loop = find_tail_loop(text)
    assert loop is not None and loop.unit in {"<td></td>", "td></td><", "/td><td><"} and loop.repeats >= 60
    assert cut_loop(text, loop).startswith("Intro text. <td></td>")
    assert len(cut_loop(text, loop)) < 30


def test_dot_leaders_loop_but_short_leaders_do_not() -> None:
    assert find_tail_loop("Contents " + "." * 500) is not None
    assert find_tail_loop("Chapter 1 " + "." * 40 + " 5") is None
    assert find_tail_loop("Normal prose that ends normally, as pages do.") is None


def test_ngram_loop_with_varying_numbers() -> None:
    text = " ".join(f"row {i} the same words keep coming back here again and again" for i in range(40))
    assert find_tail_loop(text) is None
    loop = find_ngram_loop(text)
    assert loop is not None and loop.repeats >= 20
    assert find_loop("a short page of ordinary words " * 3) is None


def test_loop_detection_is_fast_on_long_output() -> None:
    import time

    text = "".join(f"word{i} " for i in range(30_000))
    started = time.perf_counter()
    assert find_loop(text) is None
    assert time.perf_counter() - started < 1.0


# --- markdown and text -------------------------------------------------------------------------


def test_markdown_keeps_tables_html_formulas_latex_and_pictures_as_references() -> None:
    cells = parse_layout(json.dumps(PAGE_CELLS)).cells
    markdown = cells_markdown(cells)
    assert "<table><tr><td>a</td>" in markdown
    assert "$$\nE = mc^2\n$$" in markdown
    assert "![Picture 6](#bbox=10,460,300,700)" in markdown
    assert "base64" not in markdown
    assert "inline $x^2$ inline" not in markdown and "$x^2$" in markdown and "`" not in markdown
    assert markdown.startswith("Annual report 2024\n\n# Отчёт о работе")


def test_page_headers_and_footers_can_be_dropped() -> None:
    cells = parse_layout(json.dumps(PAGE_CELLS)).cells
    for output in (cells_markdown(cells, True), cells_text(cells, True)):
        assert "Annual report" not in output and "Page 3" not in output
        assert "Отчёт" in output


def test_formula_wrappers_and_preamble_are_normalised() -> None:
    assert formula_markdown("$$a+b$$") == "$$\na+b\n$$"
    assert formula_markdown("$x$") == "$$\nx\n$$"
    assert (
        formula_markdown("\\documentclass{article}\\usepackage{amsmath}\\begin{document}y\\end{document}")
        == "$$\ny\n$$"
    )


def test_plain_text_flattens_tables_and_skips_pictures() -> None:
    text = cells_text(parse_layout(json.dumps(PAGE_CELLS)).cells)
    assert "a\tb\n1\t2" in text and "<td>" not in text and "Picture" not in text
    assert table_text("<table><tr><th>x&amp;y</th><td>a<br>b</td></tr></table>") == "x&y\ta b"


# --- readings ----------------------------------------------------------------------------------


def test_read_layout_maps_cells_and_flags_truncation() -> None:
    plan = ResizePlan(source=(1000, 2000), target=(500, 1000))
    raw = json.dumps(PAGE_CELLS[:2])
    reading = read_layout(raw, "stop", plan)
    assert reading.clean and reading.cells[0].bbox == (20, 10, 1000, 80)
    cut = read_layout(raw[:-30], "length", plan)
    assert cut.truncated and cut.repaired and len(cut.cells) == 1 and cut.usable


def test_read_layout_of_a_looping_generation() -> None:
    raw = (
        json.dumps(PAGE_CELLS[:1])[:-1]
        + ', {"bbox": [1, 1, 9, 9], "category": "Table", "text": "'
        + "<td></td>" * 100
    )
    reading = read_layout(raw, "length", ResizePlan((100, 100), (100, 100)))
    assert reading.looped and reading.truncated and not reading.clean
    assert [c.category for c in reading.cells] == ["Page-header"]


def test_read_layout_of_non_json_is_unusable() -> None:
    reading = read_layout("ignpeci file wce", "stop", ResizePlan((10, 10), (10, 10)))
    assert not reading.usable and reading.repaired


def test_read_text_cuts_loops() -> None:
    reading = read_text("Total: " + "_" * 400, "length")
    assert reading.looped and reading.truncated and reading.text == "Total: _"
    plain = read_text("  Hello world  ", "stop")
    assert plain.clean and plain.text == "Hello world" == plain.markdown
