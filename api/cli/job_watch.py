"""Following a queued job from the terminal: polls the database, rides out blips, honours a timeout.

The job runs on the workers whatever happens to the follower, so a database
or network blip is no reason to die with a traceback: the watch backs off and
tries again, and says so in one line. Past ``--timeout`` it says the job is
still running and exits 4, so scripts can tell "not yet" from "failed".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.cli.exits import EXIT_STILL_RUNNING, err_console

if TYPE_CHECKING:
    from ocrq.worker.embedded import Progress

T = TypeVar("T")

POLL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 15.0
BLIPS = (OperationalError, DBAPIError, OSError)


class JobWatch:
    def __init__(self, sessions: sessionmaker[Session], job_id: int, timeout: float | None) -> None:
        self.sessions, self.job_id = sessions, job_id
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.delay = POLL_SECONDS
        self.unreachable_since: float | None = None
        self.last_progress: Progress | None = None

    def finished(self, on_progress: Callable[[Progress], None]) -> bool:
        """One look at the job; a blip counts as 'not finished yet'."""
        try:
            done, progress = self._look()
        except BLIPS as error:
            self._blip(error)
            return False
        self._reachable()
        self.last_progress = progress
        on_progress(progress)
        return done

    def pause(self) -> None:
        """Sleep until the next look; past the deadline, report and exit 4."""
        if self.deadline is not None and time.monotonic() + self.delay > self.deadline:
            time.sleep(max(0.0, self.deadline - time.monotonic()))
            self.give_up()
        time.sleep(self.delay)

    def retrying(self, action: Callable[[], T]) -> T:
        """Run a database action (writing results), again after each blip, until the deadline."""
        while True:
            try:
                result = action()
            except BLIPS as error:
                self._blip(error)
                self.pause()
                continue
            self._reachable()
            return result

    def give_up(self) -> None:
        progress = self.last_progress
        counts = f" ({progress.finished} of {progress.total} pages finished)" if progress else ""
        err_console.print(
            f"\njob {self.job_id} still running{counts}; it goes on without this command. "
            f"Follow it with `ocrq status {self.job_id}`, "
            f"collect it with `ocrq results {self.job_id} --out DIR`."
        )
        sys.exit(EXIT_STILL_RUNNING)

    def _look(self) -> tuple[bool, Progress]:
        from ocrq.db.models import Job
        from ocrq.worker.embedded import job_progress

        with self.sessions() as session:
            done = session.get_one(Job, self.job_id).finished_at is not None
        return done, job_progress(self.sessions, self.job_id)

    def _blip(self, error: BaseException) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic()
            reason = type(getattr(error, "orig", None) or error).__name__
            err_console.print(f"database unreachable ({reason}); retrying with backoff, the job goes on")
        self.delay = min(self.delay * 2, MAX_BACKOFF_SECONDS)

    def _reachable(self) -> None:
        if self.unreachable_since is not None:
            lost = time.monotonic() - self.unreachable_since
            err_console.print(f"database reachable again after {lost:.0f} s")
        self.unreachable_since, self.delay = None, POLL_SECONDS


FIRST_WORKER_CHECK_SECONDS = 5.0
WORKER_CHECK_SECONDS = 30.0


class WorkerCheck:
    """Says once, in one line, when no worker consumes a queue the waiting job needs.

    Without it ``--wait`` waits in silence for a worker that never started or
    has died; the job itself stays queued and runs as soon as one starts.
    """

    def __init__(self, count: Callable[[str], int | None], queues: list[str]) -> None:
        self.count, self.queues = count, queues
        self.next_check = time.monotonic() + FIRST_WORKER_CHECK_SECONDS
        self.said = False

    def check(self) -> None:
        if self.said or time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + WORKER_CHECK_SECONDS
        idle = [queue for queue in self.queues if self.count(queue) == 0]  # None: could not ask
        if idle:
            self.said = True
            err_console.print(
                f"\nno worker consumes the queue(s) {', '.join(idle)}: the job waits until one starts "
                "(`ocrq worker --role all`, or one worker per role: gpu, cpu)."
            )
