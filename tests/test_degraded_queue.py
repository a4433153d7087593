"""Degraded pages through the queue: real Redis, Postgres and ``ocrq worker`` processes.

The worker's vLLM is our loopback fault server, down while the job runs (grace 0: the
fallback is immediate), so Tesseract reads every page. ``submit-batch --wait`` and
``ocrq status`` then say so, and ``ocrq redo --degraded`` sends exactly those pages to
the worker again, which reads them with vLLM once the server is back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ocrq.api.cli import cli
from ocrq.db.models import Attempt, Document, Page
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.consumers import queue_consumers
from tests.factories import make_text_pdf
from tests.fault_server import running_fault_server
from tests.queue_harness import wait_for
from tests.test_celery_queue import Queue, queue  # noqa: F401  (the real-worker fixture)

pytestmark = pytest.mark.slow

PAGES = 4


def _said(output: str) -> str:
    return " ".join(output.split())


def test_queue_job_reports_degraded_pages_and_redo_reads_them_again(
    queue: Queue,  # noqa: F811
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_text_pdf(folder / "scan.pdf", [f"Queue degraded page {n}" for n in range(PAGES)])
    with running_fault_server() as server:
        engines = {
            "OCRQ_ENGINES": "vllm,tesseract",
            "OCRQ_VLLM_URL": server.url + "/v1",
            "OCRQ_VLLM_SERVED_MODEL_NAME": "test-model",
            "OCRQ_VLLM_RETRIES": "0",
            "OCRQ_PROMPT_MODE": "text_only",
            "OCRQ_FALLBACK_AFTER_SECONDS": "0",
            "OCRQ_BREAKER_FAILURES": "1",
            "OCRQ_BREAKER_RESET_SECONDS": "1",
            "OCRQ_PAGE_RETRY_BACKOFF_SECONDS": "1",
        }
        env = queue.env | engines
        queue.processes.env |= engines
        server.outage(600)
        app = create_app(queue.settings)
        assert queue_consumers(app, queue.settings.gpu_queue) == 0  # what --wait can tell its user
        queue.processes.worker("w1")
        assert queue_consumers(app, queue.settings.gpu_queue) == 1
        submitted = CliRunner().invoke(cli, ["submit-batch", str(folder), "--out", "out", "--wait"], env=env)
        assert submitted.exit_code == 0, submitted.output
        job_id = int(submitted.stdout.strip().splitlines()[0])
        assert f"{PAGES} done ({PAGES} degraded)" in _said(submitted.output)
        status = CliRunner().invoke(cli, ["status", str(job_id)], env=env)
        assert f"{PAGES} page(s) degraded" in _said(status.output)

        server.down_until = 0
        redo = CliRunner().invoke(cli, ["redo", str(job_id), "--degraded"], env=env)
        assert redo.exit_code == 0, redo.output
        assert f"sent {PAGES} degraded page(s) of job {job_id} to vllm" in _said(redo.output)
        wait_for(lambda: _engines(queue, job_id) == ["vllm"] * PAGES, 90, "the redone pages")
    with queue.sessions() as session:
        outcomes = session.scalars(
            select(Attempt.engine + ":" + Attempt.outcome)
            .join(Page)
            .join(Document)
            .where(Document.job_id == job_id)
        ).all()
    assert outcomes.count("tesseract:ok") == PAGES and outcomes.count("vllm:ok") == PAGES
    again = CliRunner().invoke(cli, ["redo", str(job_id), "--degraded"], env=env)
    assert again.exit_code == 0 and f"job {job_id} has no degraded pages" in again.output


def _engines(queue: Queue, job_id: int) -> list[str | None]:  # noqa: F811
    with queue.sessions() as session:
        return list(
            session.scalars(
                select(Page.engine).join(Document).where(Document.job_id == job_id).order_by(Page.index)
            )
        )


def test_queue_pages_wait_for_a_brief_outage_and_none_degrades(queue: Queue, tmp_path: Path) -> None:  # noqa: F811
    """Held pages go back to the queue (retry backoff 1, 2, 4 s) while the grace lasts."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_text_pdf(folder / "scan.pdf", [f"Queue grace page {n}" for n in range(PAGES)])
    with running_fault_server() as server:
        engines = {
            "OCRQ_ENGINES": "vllm,tesseract",
            "OCRQ_VLLM_URL": server.url,
            "OCRQ_VLLM_SERVED_MODEL_NAME": "test-model",
            "OCRQ_VLLM_RETRIES": "0",
            "OCRQ_PROMPT_MODE": "text_only",
            "OCRQ_FALLBACK_AFTER_SECONDS": "60",
            "OCRQ_BREAKER_FAILURES": "1",
            "OCRQ_BREAKER_FIRST_PROBE_SECONDS": "0.5",
            "OCRQ_PAGE_RETRY_BACKOFF_SECONDS": "1",
        }
        env = queue.env | engines
        queue.processes.env |= engines
        queue.processes.worker("w1")
        server.outage(4)
        submitted = CliRunner().invoke(cli, ["submit-batch", str(folder), "--out", "out", "--wait"], env=env)
        assert submitted.exit_code == 0, submitted.output
        job_id = int(submitted.stdout.strip().splitlines()[0])
        assert server.refused >= 1  # the outage hit the pages
    assert _engines(queue, job_id) == ["vllm"] * PAGES
    assert f"{PAGES} done, 0 failed" in _said(submitted.output)
