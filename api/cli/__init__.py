"""Command line: ``submit-batch`` and the ``ocrq`` group.

Exit codes: 0 every document done; 3 some documents failed or are partial;
2 usage error (including an input with no documents); 1 ocrq itself failed
(configuration, database, a bug); 4 ``--wait --timeout`` ran out while the
job goes on; 130 Ctrl-C (the job is closed as ``interrupted``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from ocrq import __version__
from ocrq.api.cli.console import PageProgressBar
from ocrq.api.cli.doctor import doctor
from ocrq.api.cli.exits import (
    EXIT_INTERRUPTED,
    OUTPUTS_HELP,
    err_console,
    exit_for,
    load_settings,
    or_exit,
)
from ocrq.api.cli.hf_cache import hf_cache_command
from ocrq.api.cli.job_options import apply_job_options, job_option_flags, report
from ocrq.api.cli.jobs import jobs
from ocrq.api.cli.logs import configure_logging, configure_logging_once
from ocrq.api.cli.models import models_command
from ocrq.api.cli.queue import QUEUE_COMMANDS, find_sources, submit_to_queue
from ocrq.api.cli.redo import redo
from ocrq.api.cli.serve import API_COMMANDS
from ocrq.api.cli.serve_hf import serve_hf
from ocrq.api.cli.vllm import vllm
from ocrq.redaction import install_log_redaction
from ocrq.settings import Settings

if TYPE_CHECKING:
    from ocrq.worker.batch import BatchInterrupted

VERSION_MESSAGE = "%(prog)s %(version)s"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="ocrq", message=VERSION_MESSAGE)
@click.option("-v", "--verbose", is_flag=True, help="Log what the engines and workers do; tracebacks too.")
def cli(verbose: bool) -> None:
    """ocrq: batch OCR job queue.

    \b
    Examples:
      submit-batch ./scans --out ./results     OCR a folder here (no broker set)
      ocrq jobs                                the jobs so far
      ocrq status 12                           one job's counts and problems
      ocrq doctor                              is everything this setup needs up?
    """
    install_log_redaction()
    configure_logging(verbose)


@cli.command("submit-batch")
@click.version_option(__version__, "-V", "--version", prog_name="submit-batch", message=VERSION_MESSAGE)
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
@click.option("--wait", is_flag=True, help="With a broker: follow the job to its end and write results.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    help="With --wait: give up following after this many seconds (exit 4, the job goes on).",
)
@click.option("--outputs", help=OUTPUTS_HELP)
@click.option(
    "--text-layer",
    type=click.Choice(["auto", "off", "only"]),
    help="PDF pages' own text: auto (trusted, else OCR), off (always OCR), only (default: OCRQ_TEXT_LAYER).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log each page (engine, attempts, time).")
@job_option_flags
def submit_batch(
    paths: tuple[Path, ...],
    out_dir: Path | None,
    force: bool,
    wait: bool,
    timeout: float | None,
    outputs: str | None,
    text_layer: str | None,
    verbose: bool,
    as_json: bool,
    priority: int,
    **flags: str | int | None,
) -> None:
    """OCR every document in PATHS (files or folders, walked recursively).

    Without OCRQ_BROKER_URL the work runs here; with it, the job is queued for
    workers and its id printed (--wait follows it like the embedded run).
    Exit codes: 0 all done, 3 some documents failed, 2 usage (no documents),
    1 ocrq failed, 4 --timeout reached with the job still running, 130 Ctrl-C.

    \b
    Examples:
      submit-batch ./scans --out ./results
      submit-batch scan.pdf --engines tesseract --dpi 300 --json > batch.json
      OCRQ_BROKER_URL=redis://localhost:6379/0 submit-batch ./scans --priority 9 --wait --timeout 3600
    """
    install_log_redaction()
    configure_logging_once(verbose)
    chosen = load_settings(outputs, text_layer)
    settings, priority = apply_job_options(chosen, force, priority=priority, **flags)
    out = out_dir or settings.output_dir
    sources = find_sources(settings, list(paths), out)
    if not settings.embedded:
        submit_to_queue(
            settings,
            sources,
            out,
            force=force,
            wait=wait,
            timeout=timeout,
            priority=priority,
            as_json=as_json,
        )
        return
    batch = _run_here(settings, sources, out, force)
    report(batch, str(out), as_json)
    exit_for(batch)


def _run_here(settings: Settings, sources: list, out: Path, force: bool) -> dict:
    from ocrq.worker.batch import BatchInterrupted, BatchRequest, run_embedded_sources

    request = BatchRequest([], out, force)
    failure: Exception | None = None
    with PageProgressBar(err_console, announce_reuse=True) as bar:
        try:
            return run_embedded_sources(settings, sources, request, bar.update)
        except BatchInterrupted as stop:
            _say_interrupted(stop, force)
        except Exception as error:  # reported once the bar is gone, not redrawn under the message
            failure = error
    return or_exit(lambda: _raise(failure))


def _say_interrupted(stop: BatchInterrupted, force: bool) -> NoReturn:
    again = "the same command without --force" if force else "the same command again"
    err_console.print(
        f"[yellow]interrupted[/yellow]: job {stop.job_id} stopped after "
        f"{stop.progress.finished} of {stop.progress.total} pages. "
        f"To resume, run {again}: pages already done are reused."
    )
    sys.exit(EXIT_INTERRUPTED)


def _raise(error: Exception | None) -> dict:
    raise error or RuntimeError("the batch ended without a result")


@cli.group()
def db() -> None:
    """Database schema.

    \b
    Examples:
      ocrq db upgrade
      OCRQ_DATABASE_URL=postgresql+psycopg://ocrq@db/ocrq ocrq db upgrade
    """


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to OCRQ_DATABASE_URL.

    \b
    Examples:
      ocrq db upgrade
      ocrq db upgrade --revision 0005
    """
    from ocrq.db.migrations import upgrade

    settings = load_settings()
    or_exit(lambda: upgrade(settings.database_url, revision))
    click.echo(f"database at {revision}")


COMMANDS = [
    *QUEUE_COMMANDS, *API_COMMANDS, jobs, redo, doctor, vllm, models_command, hf_cache_command, serve_hf
]
for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="ocrq")


def submit_batch_main() -> None:
    submit_batch(prog_name="submit-batch")
