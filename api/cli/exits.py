"""What every command shares: settings from the environment, exit codes, failing cleanly."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console

from ocrq.api.cli.failures import known_failure
from ocrq.errors import OcrqError
from ocrq.redaction import mask_text
from ocrq.settings import Settings, build_settings
from ocrq.settings_errors import settings_message, unparsable_message

T = TypeVar("T")

EXIT_OK, EXIT_SYSTEM, EXIT_USAGE, EXIT_DOCUMENTS = 0, 1, 2, 3
EXIT_STILL_RUNNING = 4
"""``--wait --timeout`` ran out while the job goes on (follow it with ``ocrq status``)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as shells report SIGINT (128 + 2)."""

err_console = Console(stderr=True)


OUTPUTS_HELP = "Result files, comma-separated: md,json,txt,pdf,alto,layout (default: OCRQ_OUTPUTS)."


def load_settings(outputs: str | None = None, text_layer: str | None = None, **overrides: object) -> Settings:
    """Bad settings are a usage error (exit 2) naming the OCRQ_ variable; ``--outputs`` and
    ``--text-layer`` win over the environment."""
    chosen = {"outputs": outputs, "text_layer": text_layer}
    overrides.update({name: value for name, value in chosen.items() if value is not None})
    try:
        settings = build_settings(**overrides)
    except ValidationError as error:
        fail("configuration", settings_message(error), EXIT_USAGE)
    except SettingsError as error:
        fail("configuration", unparsable_message(error), EXIT_USAGE)
    context = click.get_current_context(silent=True)
    if context is not None:  # or_exit names the URLs in its messages
        context.meta["ocrq.settings"] = settings
    return settings


def fail(code: str, message: str, exit_code: int = EXIT_SYSTEM) -> NoReturn:
    """The one-line end of a command: ``error (code): message``."""
    err_console.print(f"[red]error[/red] ({code}): {mask_text(message)}", highlight=False, soft_wrap=True)
    sys.exit(exit_code)


def or_exit(action: Callable[[], T]) -> T:
    """Run the action; a known failure ends the process with one line (the traceback with ``-v``)."""
    try:
        return action()
    except OcrqError as error:
        fail(error.code, error.message)
    except Exception as error:
        _known_or_internal(error)


def _known_or_internal(error: Exception) -> NoReturn:
    settings = _current_settings()
    found = known_failure(
        error, settings.database_url if settings else None, settings.broker_url if settings else None
    )
    log = logging.getLogger("ocrq")
    if found is None:
        log.error("ocrq failed", exc_info=error)
        fail("internal", f"{type(error).__name__}: {error}")
    if log.isEnabledFor(logging.INFO):
        log.info("traceback of the error below", exc_info=error)
    fail(found.code, found.message, found.exit_code)


def _current_settings() -> Settings | None:
    context = click.get_current_context(silent=True)
    return context.meta.get("ocrq.settings") if context is not None else None


def exit_for(batch: dict) -> NoReturn:
    """0 when every document is done, 3 otherwise."""
    all_done = all(doc["status"] == "done" for doc in batch["documents"])
    sys.exit(EXIT_OK if all_done else EXIT_DOCUMENTS)
