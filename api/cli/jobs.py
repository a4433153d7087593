"""``ocrq jobs``: the jobs in the database, newest first; and the "no such job" answer every
command that takes a JOB_ID gives (exit 2, as ``ocrq cancel`` does)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.cli.exits import EXIT_USAGE, fail, load_settings, or_exit
from ocrq.schemas import JobStatus


def open_sessions() -> sessionmaker[Session]:
    from ocrq.worker.batch import open_database

    settings = load_settings()
    return or_exit(lambda: open_database(settings))[1]


def require_job(sessions: sessionmaker[Session], job_id: int) -> None:
    """One line and exit 2 for an id that names no job (instead of a NoResultFound traceback)."""
    from ocrq.db.models import Job

    def exists() -> bool:
        with sessions() as session:
            return session.get(Job, job_id) is not None

    if not or_exit(exists):
        fail("not_found", f"no job {job_id}; `ocrq jobs` lists the jobs there are", EXIT_USAGE)


def _rows(sessions: sessionmaker[Session], status: str | None, limit: int) -> list[dict[str, Any]]:
    from ocrq.api.rest.queries import list_jobs
    from ocrq.jobs.access import OPERATOR

    jobs, _total = or_exit(lambda: list_jobs(sessions, OPERATOR, status, limit, 0))
    return [job.model_dump(mode="json", exclude={"links"}) for job in jobs]


def jobs_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="ocrq jobs (newest first)")
    for column in ("id", "status", "origin", "created (UTC)", "documents", "pages done"):
        table.add_column(column, overflow="fold")
    for row in rows:
        pages = row["counts"]["pages"]
        documents = ", ".join(f"{n} {s}" for s, n in sorted(row["counts"]["documents"].items())) or "-"
        table.add_row(
            str(row["id"]),
            row["status"],
            row["origin"],
            row["created_at"][:16].replace("T", " "),
            documents,
            f"{pages['done']}/{pages['total']}" + (f" ({pages['failed']} failed)" if pages["failed"] else ""),
        )
    return table


@click.command("jobs")
@click.option("--status", type=click.Choice([status.value for status in JobStatus]), help="Only these.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON array (the API's job shape).")
def jobs(status: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first, with their document and page counts.

    \b
    Examples:
      ocrq jobs
      ocrq jobs --status running
      ocrq jobs --json --limit 100 | jq '.[].id'
    """
    rows = _rows(open_sessions(), status, limit)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    elif not rows:
        click.echo("no jobs" + (f" with status {status}" if status else ""))
    else:
        Console().print(jobs_table(rows))
