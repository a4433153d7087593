"""One log format for every ocrq process: timestamped, one line per event, with the job, document and
page a line is about; JSON lines with ``OCRQ_LOG_FORMAT=json``.

structlog renders, and stdlib logging carries: Celery's, uvicorn's and the libraries' records go through
the same formatter on the root handler (``foreign_pre_chain``), so they get the timestamp, the level
and whatever ids the code around them bound with :func:`log_context`. The ids travel in contextvars:
bound where a task or a page starts, they are on every line logged beneath it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import structlog

from ocrq.redaction import mask_text

P = ParamSpec("P")
R = TypeVar("R")
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("console", "json")
_HANDLER_NAME = "ocrq"
QUIET = ("alembic", "fontTools", "pikepdf", "httpx", "httpcore")
"""Loggers whose INFO lines say nothing an operator acts on (plugin set-up on every start; httpx
would log every page's request to vLLM). ``OCRQ_LOG_LEVEL=debug`` shows them."""


def log_level(default: str = "warning") -> int:
    """``OCRQ_LOG_LEVEL`` when it names a level, else ``default`` (a bad value is reported by settings)."""
    wanted = os.environ.get("OCRQ_LOG_LEVEL", "").strip().lower()
    level: int = getattr(logging, (wanted if wanted in LEVELS else default).upper())
    return level


def log_format() -> str:
    wanted = os.environ.get("OCRQ_LOG_FORMAT", "").strip().lower()
    return wanted if wanted in FORMATS else "console"


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderer(fmt: str) -> Any:
    if fmt == "json":
        return structlog.processors.JSONRenderer(ensure_ascii=False)
    return structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)


def configure_logging(level: int, fmt: str | None = None, stream: Any = None) -> None:
    """Install the formatter on the root logger (once; calling again changes level and format)."""
    fmt = fmt or log_format()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _masked,
            _renderer(fmt),
        ],
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING) if level > logging.DEBUG else level)


def is_configured() -> bool:
    return any(handler.get_name() == _HANDLER_NAME for handler in logging.getLogger().handlers)


def _masked(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Credentials out of the message and the traceback (the record factory's masking covers stdlib
    records' text, but the traceback is formatted again here)."""
    for key in ("event", "exception"):
        if isinstance(event.get(key), str):
            event[key] = mask_text(event[key])
    return event


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Every log line inside carries these ids (``job_id``, ``document_id``, ``page``...)."""
    with structlog.contextvars.bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield


def get_logger(name: str) -> Any:
    """A structlog logger over the stdlib one: its events reach whatever handler the process has
    (ours, pytest's, a library's), never structlog's default printer on stdout."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def with_log_context(function: Callable[P, R], **ids: object) -> Callable[P, R]:
    """``function`` with the ids bound on each call: for work handed to other threads, which do not
    inherit the caller's contextvars."""

    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        with log_context(**ids):
            return function(*args, **kwargs)

    return bound
