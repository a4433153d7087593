"""``ocrq redo JOB --degraded``: read the pages a fallback engine read again, with the primary one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from ocrq.api.cli.console import print_summary
from ocrq.api.cli.exits import EXIT_DOCUMENTS, EXIT_OK, err_console, load_settings, or_exit
from ocrq.errors import ResourceNotFound
from ocrq.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from ocrq.worker.redo import RedoPlan


@click.command()
@click.argument("job_id", type=int)
@click.option(
    "--degraded",
    is_flag=True,
    required=True,
    help="The pages a fallback engine read (the only kind of redo there is, for now).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Embedded jobs: rewrite the result files here once the pages are redone.",
)
def redo(job_id: int, degraded: bool, out_dir: Path | None) -> None:
    """Send a job's degraded pages to its primary engine again; each keeps its old result until then.

    Embedded jobs are redone here (exit 3 if some page is still degraded);
    queue jobs by the workers of the job's queue (follow with ``ocrq status``).

    \b
    Examples:
      ocrq redo 12 --degraded
      ocrq redo 12 --degraded --out ./results
    """
    from ocrq.worker.batch import open_database

    settings = load_settings()
    _, sessions = or_exit(lambda: open_database(settings))
    plan = or_exit(lambda: _plan_or_none(sessions, job_id))
    if plan is None:
        raise click.UsageError(f"no job {job_id}")
    if not plan.page_ids:
        click.echo(f"job {job_id} has no degraded pages")
        sys.exit(EXIT_OK)
    if plan.queue is None:
        _redo_here(settings, sessions, plan, out_dir)
    _send(settings, plan)


def _plan_or_none(sessions: sessionmaker[Session], job_id: int) -> RedoPlan | None:
    from ocrq.worker.redo import plan_redo

    try:
        return plan_redo(sessions, job_id)
    except ResourceNotFound:
        return None


def _redo_here(
    settings: Settings, sessions: sessionmaker[Session], plan: RedoPlan, out_dir: Path | None
) -> NoReturn:
    from ocrq.worker.redo import redo_here
    from ocrq.worker.results.files import job_summary, write_job_outputs

    replaced = or_exit(lambda: redo_here(sessions, settings, plan))
    left = len(plan.page_ids) - replaced
    click.echo(f"{replaced} of {len(plan.page_ids)} degraded page(s) now read by {plan.primary}")
    if out_dir is not None:
        batch = or_exit(lambda: write_job_outputs(sessions, plan.job_id, out_dir, settings))
    else:
        batch = or_exit(lambda: job_summary(sessions, plan.job_id))
    print_summary(err_console, batch, str(out_dir) if out_dir else "(not rewritten; see `ocrq results`)")
    sys.exit(EXIT_DOCUMENTS if left else EXIT_OK)


def _send(settings: Settings, plan: RedoPlan) -> None:
    from ocrq.worker.queue.celery_app import create_app
    from ocrq.worker.redo import send_redo

    if settings.embedded:
        raise click.UsageError(f"job {plan.job_id} ran on the queue {plan.queue}; set OCRQ_BROKER_URL")
    app = or_exit(lambda: create_app(settings))
    or_exit(lambda: send_redo(app, plan, int(plan.job_settings.get("priority", 5))))
    click.echo(
        f"sent {len(plan.page_ids)} degraded page(s) of job {plan.job_id} to {plan.primary} "
        f"(queue {plan.queue}); each keeps its old result until the new one lands. "
        f"`ocrq status {plan.job_id}` shows how many are left."
    )
