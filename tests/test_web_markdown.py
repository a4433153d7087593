"""OCR output is untrusted: the viewer's Markdown keeps tables and drops anything that could run."""

from __future__ import annotations

from ocrq.api.web.markdown import markdown_html


def test_markdown_and_model_tables_render() -> None:
    html = markdown_html('# Title\n\nSome *text*.\n\n<table><tr><td colspan="2">a</td></tr></table>\n')
    assert "<h1>Title</h1>" in html and "<em>text</em>" in html
    assert '<td colspan="2">a</td>' in html


def test_scripts_handlers_and_links_do_not_survive() -> None:
    html = markdown_html(
        "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
        '<td onclick="alert(3)" colspan="x">cell</td>\n\n[link](javascript:alert(4))\n\n'
        "<style>body{display:none}</style><svg><g onload=alert(5)></g></svg>"
    )
    for forbidden in (
        "<script",
        "alert(1)",
        "<img",
        "onerror",
        "onclick",
        "colspan",
        "<a",
        "href",
        "<style",
        "<svg",
    ):
        assert forbidden not in html, forbidden
    assert "cell" in html and "link" in html


def test_text_that_looks_like_markup_is_shown_as_text() -> None:
    html = markdown_html("a < b & c > d, `<b>` in code")
    assert "a &lt; b &amp; c &gt; d" in html
    assert "<code>&lt;b&gt;</code>" in html
