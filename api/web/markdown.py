"""A page's Markdown as HTML, safe to put in the page.

OCR output is untrusted text: a scanned page may well say ``<script>``. And vision-language models
write tables as HTML inside their Markdown, which users want to see as tables. So Markdown is
rendered with HTML allowed, and the result passes a whitelist: known tags without attributes
(``colspan``/``rowspan`` excepted), everything else escaped as text. This matters twice over here:
the security-headers middleware hashes every inline script it finds into the CSP, so an inline
script that slipped through would run.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset(
    [
        "p",
        "br",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "li",
        "em",
        "strong",
        "b",
        "i",
        "u",
        "s",
        "sub",
        "sup",
        "code",
        "pre",
        "blockquote",
        "table",
        "thead",
        "tbody",
        "tfoot",
        "tr",
        "th",
        "td",
        "caption",
    ]
)
VOID_TAGS = frozenset({"br", "hr"})
ALLOWED_ATTRIBUTES = frozenset({"colspan", "rowspan"})
DROPPED_WITH_CONTENT = frozenset({"script", "style", "iframe", "object", "svg", "math", "template"})

_renderer = MarkdownIt("commonmark", {"html": True}).enable("table")


def markdown_html(markdown: str | None) -> str:
    """Rendered and cleaned; the caller marks it safe for the template."""
    return clean_html(_renderer.render(markdown or ""))


def clean_html(fragment: str) -> str:
    cleaner = _Whitelist()
    cleaner.feed(fragment)
    cleaner.close()
    return "".join(cleaner.out)


class _Whitelist(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_WITH_CONTENT:
            self._dropping += 1
        elif tag in ALLOWED_TAGS and not self._dropping:
            kept = "".join(
                f' {name}="{html.escape(value)}"'
                for name, value in attrs
                if name in ALLOWED_ATTRIBUTES and value and value.isdigit()
            )
            self.out.append(f"<{tag}{kept}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED_WITH_CONTENT:
            self._dropping = max(0, self._dropping - 1)
        elif tag in ALLOWED_TAGS and tag not in VOID_TAGS and not self._dropping:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self._dropping:
            self.out.append(html.escape(data, quote=False))
