"""Cell text as a reader sees it: Markdown, HTML tables and LaTeX formulas turned into plain text.

A searchable PDF or an ALTO string must hold the words printed on the page, not ``**``, ``<td>``
or ``\\frac``; this is the one place that decides what they become.
"""

from __future__ import annotations

import html
import re

from ocrq.worker.ocr_output.markdown import table_text

_LATEX_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π",
    "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Pi": "Π", "Sigma": "Σ",
    "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω", "cdot": "·", "times": "×", "div": "÷", "pm": "±",
    "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠", "ne": "≠", "approx": "≈", "infty": "∞",
    "sum": "∑", "prod": "∏", "int": "∫", "partial": "∂", "nabla": "∇", "to": "→", "rightarrow": "→",
    "leftarrow": "←", "Rightarrow": "⇒", "in": "∈", "sim": "∼", "equiv": "≡", "circ": "°",
    "ldots": "…", "cdots": "⋯", "dots": "…", "sqrt": "√", "%": "%", "&": "&", "$": "$", "#": "#",
}  # fmt: skip
_MATH_DELIMITERS = re.compile(r"\$\$|\\\[|\\\]|\\\(|\\\)|(?<!\\)\$")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_COMMAND = re.compile(r"\\([A-Za-z]+|[%&$#])")
_SPACING = re.compile(r"\\[,;:! ]|~|\\quad|\\qquad")
_MATH_MARKS = re.compile(r"[{}^_]")
_INLINE_MATH = re.compile(r"\$([^$\n]+)\$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_LIST_MARK = re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)(?=\S)(.+?)(?<=\S)\1")
_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+")


def plain_text(category: str, text: str | None) -> str:
    """The words a cell shows, one printed line per text line; pictures show none."""
    if category == "Picture" or not text:
        return ""
    if category == "Table" or "<table" in text.lower():
        return table_text(text)
    if category == "Formula":
        return latex_text(text)
    return markdown_text(text)


def latex_text(latex: str) -> str:
    """A formula as the characters it prints: ``\\frac{a}{b}`` is a/b, ``\\alpha`` is α."""
    body = _MATH_DELIMITERS.sub(" ", latex)
    for _ in range(4):  # nested fractions, innermost first
        body = _FRAC.sub(r"(\1)/(\2)", body)
    body = _SPACING.sub(" ", body)
    body = _COMMAND.sub(lambda m: _LATEX_SYMBOLS.get(m.group(1), ""), body)
    body = _MATH_MARKS.sub("", body).replace("()/", "/")
    return "\n".join(_squeeze(line) for line in body.splitlines() if line.strip())


def markdown_text(markdown: str) -> str:
    """Markdown (and the odd inline HTML) without its marks; inline math read like a formula."""
    text = _INLINE_MATH.sub(lambda m: latex_text(m.group(1)), markdown)
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _HEADING.sub("", _LIST_MARK.sub(r"\1", text))
    for _ in range(2):  # ***both*** is bold inside italic
        text = _EMPHASIS.sub(r"\2", text)
    text = html.unescape(_TAG.sub("", _BREAK.sub("\n", text)))
    return "\n".join(_squeeze(line) for line in text.splitlines() if line.strip())


def _squeeze(line: str) -> str:
    return _SPACES.sub(" ", line).strip()
