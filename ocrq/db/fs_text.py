"""Text columns for names that come from the file system, where a name need not be valid UTF-8.

Python reads such a name with ``surrogateescape`` (``bad\\xff.pdf`` becomes a
string holding the lone surrogate U+DCFF), which no database driver can store.
A source path must round-trip exactly, or the worker cannot open the file:
:class:`FsPathText` stores it escaped under a marker and gives back the same
string. Names and messages only shown to people go through :class:`ShownText`,
which writes the undecodable bytes as ``\\xff``.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

ESCAPED_MARK = "fs-escaped:"
"""Prefix of a stored path that was escaped; a real source path is absolute, so it never starts so."""
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def has_undecodable(text: str) -> bool:
    return _LONE_SURROGATE.search(text) is not None


def shown(text: str) -> str:
    """The text as a person should see it: undecodable bytes as ``\\xff``, the rest unchanged."""
    if not has_undecodable(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that did not come from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_path(path: str) -> str:
    """Lossless and storable; a path with nothing undecodable is stored as it is."""
    if not has_undecodable(path):
        return path
    body = _LONE_SURROGATE.sub(_surrogate_escape, path.replace("\\", "\\\\"))
    return ESCAPED_MARK + body


def stored_prefixes(prefix: str) -> list[str]:
    """How paths under ``prefix`` may begin in the database: plain, or escaped (for ``LIKE``)."""
    if has_undecodable(prefix):
        return [escape_path(prefix)]
    return [prefix, ESCAPED_MARK + prefix.replace("\\", "\\\\")]


def unescape_path(stored: str) -> str:
    if not stored.startswith(ESCAPED_MARK):
        return stored
    return _ESCAPE.sub(_unescape_one, stored[len(ESCAPED_MARK) :])


def _surrogate_escape(match: re.Match[str]) -> str:
    point = ord(match.group())
    return f"\\x{point - 0xDC00:02x}" if 0xDC80 <= point <= 0xDCFF else f"\\u{point:04x}"


def _unescape_one(match: re.Match[str]) -> str:
    token = match.group(1)
    if token == "\\":
        return "\\"
    if token[0] == "x":
        return chr(0xDC00 + int(token[1:], 16))
    return chr(int(token[1:], 16))


class FsPathText(TypeDecorator[str]):
    """A file-system path, stored losslessly (see the module docstring)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return escape_path(value) if isinstance(value, str) else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return unescape_path(value) if isinstance(value, str) else value


class ShownText(TypeDecorator[str]):
    """Text for people (a relative name, an error message): undecodable bytes stored as ``\\xff``."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return shown(value) if isinstance(value, str) else value
