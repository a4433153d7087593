"""Real Celery worker and beat processes for the queue tests, and ways to wait on the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Document, Job, Page

CLI = [sys.executable, "-c", "from ocrq.api.cli import main; main()"]
REPO_ROOT = Path(__file__).resolve().parents[1]


class Processes:
    """Starts ocrq commands as real child processes (own process groups) and always stops them."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = os.environ | {"PYTHONPATH": str(REPO_ROOT)} | env
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [*CLI, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.logs,
        )
        self.running.append(process)
        self.names[process.pid] = name
        return process

    def worker(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        process = self.start("worker", "--role", "all", "--loglevel", "INFO", *extra, name=name)
        wait_for(lambda: b"ready." in (self.logs / f"{name}.log").read_bytes(), 60, f"{name} ready")
        return process

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if process.poll() is None:
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop_all(self, grace_s: float = 30.0) -> list[str]:
        """SIGTERM every process still running, as ``docker stop`` does; SIGKILL those that outlive
        ``grace_s``, and return their names (a worker should stop within it)."""
        alive = [process for process in self.running if process.poll() is None]
        for process in alive:
            os.killpg(process.pid, signal.SIGTERM)
        deadline, late = time.monotonic() + grace_s, []
        for process in alive:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                late.append(self.names[process.pid])
                self.kill(process)
        return late


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def pages_with_status(sessions: sessionmaker[Session], job_id: int, status: str) -> int:
    with sessions() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Page)
                .join(Document)
                .where(Document.job_id == job_id, Page.status == status)
            )
            or 0
        )


def job_finished(sessions: sessionmaker[Session], job_id: int) -> bool:
    with sessions() as session:
        return session.get_one(Job, job_id).finished_at is not None
