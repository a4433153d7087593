"""What every command shares: settings from the environment, exit codes, failing cleanly."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import InterfaceError, OperationalError

from ocrq.errors import DatabaseUnavailable, OcrqError
from ocrq.redaction import mask_text
from ocrq.settings import Settings, build_settings

T = TypeVar("T")

EXIT_OK, EXIT_SYSTEM, EXIT_USAGE, EXIT_DOCUMENTS = 0, 1, 2, 3
EXIT_STILL_RUNNING = 4
"""``--wait --timeout`` ran out while the job goes on (follow it with ``ocrq status``)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as shells report SIGINT (128 + 2)."""

err_console = Console(stderr=True)


OUTPUTS_HELP = "Result files, comma-separated: md,json,txt,pdf,alto,layout (default: OCRQ_OUTPUTS)."


def load_settings(outputs: str | None = None, text_layer: str | None = None) -> Settings:
    """Bad settings are a usage error (exit 2), with pydantic's explanation; ``--outputs`` and
    ``--text-layer`` win over the environment."""
    chosen = {"outputs": outputs, "text_layer": text_layer}
    try:
        return build_settings(**{name: value for name, value in chosen.items() if value is not None})
    except ValidationError as error:
        raise click.UsageError(mask_text(f"bad OCRQ_ settings:\n{error}")) from error


def or_exit(action: Callable[[], T]) -> T:
    """Run the action; ocrq's own failures end the process with exit code 1 and a plain message."""
    try:
        return action()
    except OcrqError as error:
        err_console.print(f"[red]error[/red] ({error.code}): {mask_text(error.message)}")
    except (OperationalError, InterfaceError) as error:  # no traceback for a database that is away
        reason = DatabaseUnavailable(f"cannot reach the database: {error.orig or error}")
        err_console.print(f"[red]error[/red] ({reason.code}): {mask_text(reason.message)}")
    except Exception as error:
        logging.getLogger("ocrq").exception("ocrq failed")
        err_console.print(f"[red]internal error[/red]: {type(error).__name__}: {mask_text(str(error))}")
    sys.exit(EXIT_SYSTEM)


def exit_for(batch: dict) -> NoReturn:
    """0 when every document is done, 3 otherwise."""
    all_done = all(doc["status"] == "done" for doc in batch["documents"])
    sys.exit(EXIT_OK if all_done else EXIT_DOCUMENTS)
