"""Command line: ``submit-batch`` and the ``ocrq`` group.

Exit codes: 0 every document done; 3 some documents failed or are partial;
2 usage error; 1 ocrq itself failed (configuration, database, a bug).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ocrq import __version__
from ocrq.api.cli.console import PageProgressBar
from ocrq.api.cli.doctor import doctor
from ocrq.api.cli.exits import EXIT_OK, OUTPUTS_HELP, err_console, exit_for, load_settings, or_exit
from ocrq.api.cli.hf_cache import hf_cache_command
from ocrq.api.cli.job_options import apply_job_options, job_option_flags, report
from ocrq.api.cli.jobs import jobs
from ocrq.api.cli.logs import configure_logging, configure_logging_once
from ocrq.api.cli.models import models_command
from ocrq.api.cli.queue import QUEUE_COMMANDS, submit_to_queue
from ocrq.api.cli.serve import API_COMMANDS
from ocrq.api.cli.serve_hf import serve_hf
from ocrq.api.cli.vllm import vllm
from ocrq.redaction import install_log_redaction
from ocrq.settings import Settings

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
@click.option("--outputs", help=OUTPUTS_HELP)
@click.option("-v", "--verbose", is_flag=True, help="Log each page (engine, attempts, time).")
@job_option_flags
def submit_batch(
    paths: tuple[Path, ...],
    out_dir: Path | None,
    force: bool,
    wait: bool,
    outputs: str | None,
    verbose: bool,
    as_json: bool,
    priority: int,
    **flags: str | int | None,
) -> None:
    """OCR every document in PATHS (files or folders, walked recursively).

    Without OCRQ_BROKER_URL the work runs here; with it, the job is queued for
    workers and its id printed (--wait follows it like the embedded run).

    \b
    Examples:
      submit-batch ./scans --out ./results
      submit-batch scan.pdf --engines tesseract --dpi 300 --json > batch.json
      OCRQ_BROKER_URL=redis://localhost:6379/0 submit-batch ./scans --priority 9 --wait
    """
    install_log_redaction()
    configure_logging_once(verbose)
    settings, priority = apply_job_options(load_settings(outputs), force, priority=priority, **flags)
    out = out_dir or settings.output_dir
    if not settings.embedded:
        queue_options = {"force": force, "wait": wait, "priority": priority, "as_json": as_json}
        submit_to_queue(settings, list(paths), out, **queue_options)
        return
    batch = _run_here(settings, list(paths), out, force)
    report(batch, str(out), as_json)
    exit_for(batch)


def _run_here(settings: Settings, paths: list[Path], out: Path, force: bool) -> dict:
    from ocrq.worker.batch import BatchRequest, run_embedded_batch

    request = BatchRequest(paths, out, force)
    failure: Exception | None = None
    with PageProgressBar(err_console, announce_reuse=True) as bar:
        try:
            return run_embedded_batch(settings, request, bar.update)
        except Exception as error:  # reported once the bar is gone, not redrawn under the message
            failure = error
    return or_exit(lambda: _raise(failure))


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


COMMANDS = [*QUEUE_COMMANDS, *API_COMMANDS, jobs, doctor, vllm, models_command, hf_cache_command, serve_hf]
for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="ocrq")


def submit_batch_main() -> None:
    submit_batch(prog_name="submit-batch")
    sys.exit(EXIT_OK)
