"""Commands for the distributed mode: workers, beat, Flower, and following jobs in the queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.cli.console import PageProgressBar, print_summary
from ocrq.api.cli.exits import EXIT_OK, OUTPUTS_HELP, err_console, exit_for, load_settings, or_exit
from ocrq.api.cli.job_options import announce_queued, report
from ocrq.api.cli.job_watch import JobWatch, WorkerCheck
from ocrq.api.cli.jobs import require_job
from ocrq.logs import configure_logging, log_level
from ocrq.settings import Settings

if TYPE_CHECKING:
    from ocrq.worker.documents.sources import SourceFile


def _open(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    from ocrq.worker.batch import open_database

    return or_exit(lambda: open_database(settings))


def find_sources(settings: Settings, paths: list[Path], out: Path) -> list[SourceFile]:
    """The documents under PATHS; none at all is a usage error (exit 2), not an empty job."""
    from ocrq.worker.batch import own_files
    from ocrq.worker.documents.sources import walk_sources

    sources = walk_sources(paths, exclude=own_files(settings, out))
    if not sources:
        shown = ", ".join(str(path) for path in paths)
        raise click.UsageError(
            f"no documents found in {shown} (folders are walked recursively; hidden files and "
            "the output folder are skipped)"
        )
    return sources


def submit_to_queue(
    settings: Settings,
    sources: list[SourceFile],
    out: Path,
    *,
    force: bool,
    wait: bool,
    timeout: float | None = None,
    priority: int = 5,
    as_json: bool = False,
) -> None:
    """Register and enqueue; print the job id, or follow it to the end with ``wait``."""
    from ocrq.worker.queue.celery_app import create_app
    from ocrq.worker.queue.dispatch import Dispatcher

    _, sessions = _open(settings)
    dispatcher = Dispatcher(create_app(settings), sessions, settings)
    job_id = or_exit(lambda: dispatcher.submit(sources, reuse=not force, priority=priority))
    if not wait:
        announce_queued(job_id, as_json)
    else:
        if not as_json:
            click.echo(job_id)
        follow(sessions, job_id, out, settings, timeout, as_json)


def follow(
    sessions: sessionmaker[Session],
    job_id: int,
    out: Path,
    settings: Settings,
    timeout: float | None = None,
    as_json: bool = False,
) -> None:
    """Progress bar from the database until the job ends, then results and the embedded exit code.

    A database blip is ridden out with backoff (the job goes on without us);
    past ``timeout`` the command says the job is still running and exits 4.
    """
    from ocrq.worker.results.files import write_job_outputs

    watch, workers = JobWatch(sessions, job_id, timeout), _worker_check(settings)
    with PageProgressBar(err_console) as bar:
        while not watch.finished(bar.update):
            workers.check()
            watch.pause()
    batch = watch.retrying(lambda: write_job_outputs(sessions, job_id, out, settings))
    report(batch, str(out), as_json)
    exit_for(batch)


def _worker_check(settings: Settings) -> WorkerCheck:
    from ocrq.worker.queue.celery_app import create_app
    from ocrq.worker.queue.consumers import queue_consumers

    app = create_app(settings)
    return WorkerCheck(lambda queue: queue_consumers(app, queue), [settings.cpu_queue, settings.gpu_queue])


@click.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (batch.json's shape).")
@click.option("--pages", "with_pages", is_flag=True, help="Also each page: engine and every attempt.")
def status(job_id: int, as_json: bool, with_pages: bool) -> None:
    """Show a job's status, counts and per-document errors.

    \b
    Examples:
      ocrq status 12
      ocrq status 12 --json | jq .counts
    """
    from ocrq.worker.results.files import job_summary

    _, sessions = _open(load_settings())
    require_job(sessions, job_id)
    summary = or_exit(lambda: job_summary(sessions, job_id))
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print_summary(err_console, summary, None)
    if with_pages:
        from ocrq.api.cli.pages import print_pages

        or_exit(lambda: print_pages(sessions, job_id))


@click.command()
@click.argument("job_id", type=int)
def cancel(job_id: int) -> None:
    """Cancel a job: queued pages are skipped, running ones finish.

    \b
    Examples:
      ocrq cancel 12
    """
    from ocrq.jobs.store import JobStore

    _, sessions = _open(load_settings())
    if not JobStore(sessions).cancel_job(job_id):
        raise click.UsageError(f"job {job_id} is unknown or already finished")
    click.echo(f"job {job_id} cancelled")


@click.command()
@click.argument("job_id", type=int)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--outputs", help=OUTPUTS_HELP)
def results(job_id: int, out_dir: Path, outputs: str | None) -> None:
    """Write a job's result files (Markdown, JSON, text, PDF, ALTO...) and batch.json from the database.

    \b
    Examples:
      ocrq results 12 --out ./results
      ocrq results 12 --out ./results --outputs md,txt
    """
    from ocrq.worker.results.files import write_job_outputs

    settings = load_settings(outputs)
    _, sessions = _open(settings)
    require_job(sessions, job_id)
    batch = or_exit(lambda: write_job_outputs(sessions, job_id, out_dir, settings))
    print_summary(err_console, batch, str(out_dir))
    exit_for(batch)


@click.command()
@click.option("--role", type=click.Choice(["gpu", "cpu", "all"]), default="all", show_default=True)
@click.option("--concurrency", "-c", type=int, help="Override the role's default.")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Export this worker's page counters for Prometheus on 127.0.0.1:PORT/metrics.",
)
@click.option("--metrics-address", default="127.0.0.1", show_default=True, help="0.0.0.0 in a container.")
def worker(
    role: str, concurrency: int | None, loglevel: str, metrics_port: int | None, metrics_address: str
) -> None:
    """Run a Celery worker: gpu = page OCR (threads), cpu = ingest (processes), all = both.

    \b
    Examples:
      ocrq worker --role all
      CUDA_VISIBLE_DEVICES=1 ocrq worker --role gpu
    """
    from ocrq.worker.preflight import preflight_engines
    from ocrq.worker.queue.celery_app import create_app
    from ocrq.worker.queue.roles import worker_argv

    settings = load_settings()
    configure_logging(log_level(loglevel.lower()))  # Celery's lines through ocrq's formatter
    app = or_exit(lambda: create_app(settings))
    or_exit(lambda: preflight_engines(settings, role))  # a misconfigured engine: one line, exit 1
    if metrics_port:
        from ocrq.worker.metrics import serve_metrics

        or_exit(lambda: serve_metrics(metrics_port, metrics_address))
    app.worker_main(worker_argv(settings, role, concurrency, loglevel))


@click.command()
@click.option("--schedule-file", default="celerybeat-schedule", show_default=True)
def beat(schedule_file: str) -> None:
    """Run the scheduler (reconciler, nightly inbox); refuses if another beat runs.

    \b
    Examples:
      ocrq beat
    """
    from ocrq.worker.queue.beat_lock import BeatLock
    from ocrq.worker.queue.celery_app import create_app

    settings = load_settings()
    app = or_exit(lambda: create_app(settings))
    configure_logging(log_level("info"))
    lock = BeatLock(settings.broker_url or "")
    or_exit(lock.acquire)
    try:
        app.start(["beat", "--schedule", schedule_file, "--loglevel", "INFO"])
    finally:
        lock.release()


FLOWER_MIN_PASSWORD_CHARS = 12


def flower_auth_problem(basic_auth: str | None) -> str | None:
    """Why ``OCRQ_FLOWER_BASIC_AUTH`` must not be served (None: every ``user:password`` pair is fine)."""
    if not basic_auth:
        return "set OCRQ_FLOWER_BASIC_AUTH=user:password; Flower is not served unauthenticated"
    for pair in basic_auth.split(","):
        user, colon, password = pair.partition(":")
        if not user.strip() or not colon:
            return "OCRQ_FLOWER_BASIC_AUTH takes user:password pairs, separated by commas"
        if len(password) < FLOWER_MIN_PASSWORD_CHARS:
            return (
                f"the Flower password of {user.strip()!r} is empty or short; "
                f"use at least {FLOWER_MIN_PASSWORD_CHARS} characters"
            )
    return None


@click.command()
@click.option("--port", default=5555, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; 0.0.0.0 exposes Flower (and task arguments) to the network.",
)
def flower(port: int, address: str) -> None:
    """Run Flower with basic auth from OCRQ_FLOWER_BASIC_AUTH (a password of 12+ characters).

    \b
    Examples:
      OCRQ_FLOWER_BASIC_AUTH=admin:a-long-password ocrq flower
    """
    from ocrq.worker.queue.celery_app import create_app

    settings = load_settings()
    if problem := flower_auth_problem(settings.flower_basic_auth):
        raise click.UsageError(problem)
    app = or_exit(lambda: create_app(settings))
    app.start(
        ["flower", f"--address={address}", f"--port={port}", f"--basic-auth={settings.flower_basic_auth}"]
    )


@click.command()
@click.option("--now", is_flag=True, hidden=True, help="Accepted for old crontab lines.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Embedded mode only: where results go.",
)
def ingest(now: bool, out_dir: Path | None) -> None:
    """Ingest OCRQ_INBOX_DIR once (what beat does nightly); for a plain crontab line.

    \b
    Examples:
      ocrq ingest
      OCRQ_INBOX_DIR=/srv/inbox ocrq ingest --out ./results
    """
    from ocrq.worker.inbox_now import ingest_inbox_now

    settings = load_settings()
    if settings.inbox_dir is None:
        raise click.UsageError("OCRQ_INBOX_DIR is not set")
    job_id = or_exit(lambda: ingest_inbox_now(settings, out_dir or settings.output_dir))
    click.echo(job_id if job_id is not None else "nothing new in the inbox")
    raise SystemExit(EXIT_OK)


QUEUE_COMMANDS = [status, cancel, results, worker, beat, flower, ingest]
