"""Credentials out of everything ocrq prints: URLs in doctor lines, log records and error messages.

Broker, database, vLLM and webhook URLs may carry a password (``redis://:pw@host``),
a token as the user name (``https://TOKEN@host``) or a secret query parameter.
Masking happens where text leaves the process, on the text itself, so a URL
quoted inside a third-party exception message is caught as well as our own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit, urlunsplit

from ocrq.db.fs_text import shown

MASK = "***"
TOKEN_AS_USER_SCHEMES = frozenset({"http", "https", "ws", "wss"})

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/\s'\"<>]+)@")
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&;](?:password|passwd|pwd|token|access_token|api_key|apikey|key|secret|sig|signature|auth)=)"
    r"(?P<value>[^&;#\s'\"<>]+)",
    re.IGNORECASE,
)


def _shown_userinfo(scheme: str, userinfo: str) -> str:
    """``user:***``; a lone user name is masked too on web URLs, where it is usually a token."""
    user, colon, _password = userinfo.partition(":")
    if colon:
        return f"{user}:{MASK}"
    return MASK if scheme.lower().rstrip(":/") in TOKEN_AS_USER_SCHEMES else user


def _masked_userinfo(match: re.Match[str]) -> str:
    return f"{match['scheme']}{_shown_userinfo(match['scheme'], match['userinfo'])}@"


def mask_text(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    text = _USERINFO.sub(_masked_userinfo, text)
    return _SECRET_PARAMETER.sub(lambda m: m["name"] + MASK, text)


def mask_url(url: str | None) -> str:
    """One URL for display: the same URL with its user info and secret query values masked."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL: mask whatever looks like credentials
        return mask_text(url)
    return mask_text(urlunsplit(_without_password(parts)))


def _without_password(parts: SplitResult) -> SplitResult:
    if "@" not in parts.netloc:
        return parts
    userinfo, _, hostport = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{_shown_userinfo(parts.scheme, userinfo)}@{hostport}")


class _Redacting:
    """A log record factory that masks the message and the traceback when the record is made.

    A factory sees every record of every logger (ours, Celery's, uvicorn's)
    before any handler formats it; a filter on one logger would miss records
    that propagate past it. Records without credentials are left exactly as
    they are (uvicorn's access formatter unpacks ``args`` itself); in the
    others each argument is masked, or, failing that, the whole message.
    """

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the caller's bug; logging reports it later
            return record
        masked = mask_text(message)
        if masked != message:
            _mask_record(record, masked)
        return record


def _mask_record(record: logging.LogRecord, masked: str) -> None:
    record.msg = mask_text(record.msg) if isinstance(record.msg, str) else record.msg
    if isinstance(record.args, tuple):
        record.args = tuple(_masked_arg(arg) for arg in record.args)
    elif isinstance(record.args, dict):
        record.args = {key: _masked_arg(value) for key, value in record.args.items()}
    try:
        if record.getMessage() == masked:
            return
    except Exception:
        pass
    record.msg, record.args = masked, None  # the pieces did not add up: the whole text, masked


def _masked_arg(arg: object) -> object:
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    text = str(arg)
    shown = mask_text(text)
    return arg if shown == text else shown


def install_log_redaction() -> None:
    """Mask credentials in every log record from now on (idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _Redacting):
        logging.setLogRecordFactory(_Redacting(current))


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~\-])/(?:[\w.@+\-]+/)+[\w.@+\-]*")


def hide_server_paths(text: str | None, path: str, relpath: str) -> str | None:
    """A stored error message as a client may see it: no absolute path of this server in it.

    The document's own path becomes the path the client gave (``relpath``);
    any other absolute path (an upload folder, tessdata) shrinks to its last
    part. The CLI and ``batch.json`` keep the full paths: they are the
    operator's own.
    """
    if not text:
        return text
    text = text.replace(shown(path), relpath)  # stored messages show undecodable bytes as \xff
    return _ABSOLUTE_PATH.sub(lambda m: m.group().rstrip("/").rsplit("/", 1)[-1] or "/", text)
