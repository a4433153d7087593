"""Turning accepted sources into a job: registered, then queued for Celery or the background runner.

One interface, two modes. With ``OCRQ_BROKER_URL`` the job goes through
:class:`ocrq.worker.queue.dispatch.Dispatcher` exactly as ``submit-batch`` sends it;
without, :func:`ocrq.worker.documents.ingest.create_job` registers it and the
:class:`~ocrq.api.rest.embedded.BackgroundRunner` picks it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from celery import Celery
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.embedded import BackgroundRunner, unfinished_embedded_jobs
from ocrq.api.rest.schemas import JobOptions
from ocrq.db.models import Job, utcnow
from ocrq.redaction import mask_url
from ocrq.settings import Settings
from ocrq.worker.documents.ingest import create_job
from ocrq.worker.documents.sources import SourceFile
from ocrq.worker.queue.dispatch import Dispatcher
from ocrq.worker.redo import RedoPlan, send_redo

ORIGIN = "api"


def job_settings(settings: Settings, options: JobOptions) -> Settings:
    """The server's settings with this job's choices on top, applied and validated the one way a
    worker applies a job's recorded settings (:meth:`Settings.for_job`)."""
    return settings.for_job(job_choices(options))


def job_choices(options: JobOptions) -> dict[str, object]:
    """The API's option names as the settings they choose; options left unset are not choices."""
    chosen: dict[str, object] = {
        "engines": list(options.engines or []),
        "render_dpi": options.dpi,
        "vllm_model": options.model,
        "prompt_mode": options.prompt_mode,
        "text_layer": options.text_layer,
    }
    return {key: value for key, value in chosen.items() if value}


@dataclass(frozen=True, slots=True)
class Owner:
    """Who submits and how many pages the files declared (the key's quota counts them)."""

    key_id: int | None
    declared_pages: int


class Submitter(Protocol):
    def submit(self, sources: list[SourceFile], options: JobOptions, owner: Owner) -> int: ...

    def redo(self, plan: RedoPlan) -> None:
        """Send a job's degraded pages to its primary engine again (old results stay until then)."""
        ...


class QueueSubmitter:
    def __init__(self, celery: Celery, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.celery, self.sessions, self.settings = celery, sessions, settings

    def submit(self, sources: list[SourceFile], options: JobOptions, owner: Owner) -> int:
        dispatcher = Dispatcher(self.celery, self.sessions, job_settings(self.settings, options))
        job_id = dispatcher.submit(sources, origin=ORIGIN, reuse=not options.force, priority=options.priority)
        annotate_job(self.sessions, job_id, options, owner)
        return job_id

    def redo(self, plan: RedoPlan) -> None:
        send_redo(self.celery, plan, int(plan.job_settings.get("priority", 5)))


class EmbeddedSubmitter:
    def __init__(self, runner: BackgroundRunner, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.runner, self.sessions, self.settings = runner, sessions, settings

    def submit(self, sources: list[SourceFile], options: JobOptions, owner: Owner) -> int:
        settings = job_settings(self.settings, options)
        job_id = create_job(self.sessions, sources, settings, origin=ORIGIN, reuse=not options.force)
        annotate_job(self.sessions, job_id, options, owner)
        self.runner.enqueue(job_id, settings)
        return job_id

    def redo(self, plan: RedoPlan) -> None:
        options = JobOptions.model_validate(plan.job_settings.get("api_options", {}))
        self.runner.enqueue_redo(plan, job_settings(self.settings, options))

    def resume(self) -> None:
        """Queue again the jobs a previous API process accepted but did not finish."""
        for job in unfinished_embedded_jobs(self.sessions):
            options = JobOptions.model_validate(job.settings.get("api_options", {}))
            self.runner.enqueue(job.id, job_settings(self.settings, options))


def _shown_options(options: JobOptions) -> dict[str, Any]:
    """The options as job settings show them (API, batch.json): the callback's credentials masked.
    The URL itself is kept in ``jobs.callback_url``, which only the sender reads."""
    shown = options.model_dump(mode="json")
    if shown.get("callback_url"):
        shown["callback_url"] = mask_url(shown["callback_url"])
    return shown


def annotate_job(sessions: sessionmaker[Session], job_id: int, options: JobOptions, owner: Owner) -> None:
    """Record the submitter, the options and the webhook to send (the sender finds it by state)."""
    callback = str(options.callback_url) if options.callback_url else None
    with sessions.begin() as session:
        job = session.get_one(Job, job_id)
        values: dict[str, Any] = {
            "api_key_id": owner.key_id,
            "declared_pages": owner.declared_pages,
            "settings": job.settings | {"api_options": _shown_options(options)},
            "callback_url": callback,
        }
        if callback:
            values |= {"webhook_status": "pending", "webhook_due_at": utcnow()}
        session.execute(update(Job).where(Job.id == job_id).values(**values))
