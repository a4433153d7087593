"""Command line: ``submit-batch`` and the ``ocrq`` group.

Exit codes: 0 every document done; 3 some documents failed or are partial;
2 usage error; 1 ocrq itself failed (configuration, database, a bug).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from pydantic import ValidationError
from rich.console import Console

from api.console import PageProgressBar, print_summary
from ocrq.errors import OcrqError
from ocrq.settings import Settings, build_settings

T = TypeVar("T")

EXIT_OK, EXIT_SYSTEM, EXIT_USAGE, EXIT_DOCUMENTS = 0, 1, 2, 3


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what the engines and workers do.")
def cli(verbose: bool) -> None:
    """ocrq: batch OCR job queue."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@cli.command("submit-batch")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where results go (default: OCRQ_OUTPUT_DIR, ./results).",
)
@click.option(
    "--force", is_flag=True, help="OCR again documents already done with the same content and settings."
)
def submit_batch(paths: tuple[Path, ...], out_dir: Path | None, force: bool) -> None:
    """OCR every document in PATHS (files or folders, walked recursively)."""
    from worker.batch import BatchRequest, run_embedded_batch

    settings = _settings()
    console = Console(stderr=True)
    request = BatchRequest(list(paths), out_dir or settings.output_dir, force)
    with PageProgressBar(console) as bar:
        batch = _or_exit(lambda: run_embedded_batch(settings, request, bar.update), console)
    print_summary(console, batch, str(request.out_dir))
    all_done = all(doc["status"] == "done" for doc in batch["documents"])
    sys.exit(EXIT_OK if all_done else EXIT_DOCUMENTS)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to OCRQ_DATABASE_URL."""
    from ocrq.db.migrations import upgrade

    settings = _settings()
    _or_exit(lambda: upgrade(settings.database_url, revision), Console(stderr=True))
    click.echo(f"database at {revision}")


def _settings() -> Settings:
    try:
        return build_settings()
    except ValidationError as error:
        raise click.UsageError(f"bad OCRQ_ settings:\n{error}") from error


def _or_exit(action: Callable[[], T], console: Console) -> T:
    """Run the action; ocrq's own failures end the process with exit code 1 and a plain message."""
    try:
        return action()
    except OcrqError as error:
        console.print(f"[red]error[/red] ({error.code}): {error.message}")
    except Exception as error:
        logging.getLogger("ocrq").exception("ocrq failed")
        console.print(f"[red]internal error[/red]: {type(error).__name__}: {error}")
    sys.exit(EXIT_SYSTEM)


def main() -> None:
    cli(prog_name="ocrq")


def submit_batch_main() -> None:
    submit_batch(prog_name="submit-batch")
