"""The FastAPI app, made by :func:`create_app` from settings (nothing is built at import time).

The app only registers and enqueues. With ``OCRQ_BROKER_URL`` jobs go to
Celery workers; without one a background thread in this process runs them
(the embedded default), so ``ocrq api`` alone serves a single box. Either
way the webhook sender runs here, driven by job state in the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ocrq import __version__
from ocrq.api.rest.admission import KeyQuota
from ocrq.api.rest.deps import require_api_key
from ocrq.api.rest.docs import install_docs
from ocrq.api.rest.embedded import BackgroundRunner
from ocrq.api.rest.errors import install_error_handlers
from ocrq.api.rest.headers import SecurityHeaders
from ocrq.api.rest.metrics import make_registry
from ocrq.api.rest.routes import documents, health, jobs
from ocrq.api.rest.schemas import PathsJobCreate
from ocrq.api.rest.submission import EmbeddedSubmitter, QueueSubmitter, Submitter
from ocrq.api.rest.webhook_policy import Resolver, WebhookPolicy
from ocrq.api.rest.webhooks import WebhookSender
from ocrq.api.web import install_web
from ocrq.redaction import install_log_redaction
from ocrq.settings import Settings, build_settings
from ocrq.worker.batch import open_database


def create_app(settings: Settings | None = None, resolver: Resolver | None = None) -> FastAPI:
    """``resolver`` replaces DNS for webhook hosts (tests name hosts without touching /etc/hosts)."""
    install_log_redaction()
    settings = settings or build_settings()
    engine, sessions = open_database(settings)
    submitter, runner = _submitter(settings, sessions)
    policy = WebhookPolicy.from_settings(settings, resolver)
    background = Background(runner, submitter, WebhookSender(sessions, settings, policy), engine)
    app = FastAPI(
        title="ocrq",
        version=__version__,
        lifespan=background.lifespan,
        summary="Batch OCR job queue",
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.settings, app.state.sessions, app.state.submitter = settings, sessions, submitter
    app.state.quota, app.state.webhook_policy = KeyQuota(sessions), policy
    app.state.registry = make_registry(sessions, settings)
    install_error_handlers(app)
    _include_routers(app)
    docs = install_docs(app)
    app.add_middleware(SecurityHeaders, behind_tls=settings.api_behind_tls, docs_paths=docs)
    app.openapi = _openapi_with_request_schemas(app)  # type: ignore[method-assign]
    return app


@dataclass
class Background:
    """What runs beside the request handlers for the app's lifetime."""

    runner: BackgroundRunner | None
    submitter: Submitter
    sender: WebhookSender
    engine: Engine

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        if self.runner is not None and isinstance(self.submitter, EmbeddedSubmitter):
            self.submitter.resume()
            self.runner.start()
        self.sender.start()
        try:
            yield
        finally:
            self.sender.stop()
            if self.runner is not None:
                self.runner.stop()
            self.engine.dispose()


def _submitter(
    settings: Settings, sessions: sessionmaker[Session]
) -> tuple[Submitter, BackgroundRunner | None]:
    if settings.embedded:
        runner = BackgroundRunner(sessions)
        return EmbeddedSubmitter(runner, sessions, settings), runner
    from ocrq.worker.queue.celery_app import create_app as create_celery_app

    return QueueSubmitter(create_celery_app(settings), sessions, settings), None


def operation_id(route: APIRoute) -> str:
    """The handler's name (``submit_job``), not FastAPI's ``submit_job_v1_jobs_post``: clients read
    better, and a test keeps the names unique."""
    return route.name


def _include_routers(app: FastAPI) -> None:
    app.include_router(health.router)
    authenticated = [Depends(require_api_key)]
    app.include_router(jobs.router, prefix="/v1", dependencies=authenticated)
    app.include_router(documents.router, prefix="/v1", dependencies=authenticated)
    install_web(app)  # the page under /, after /v1 so no page path can shadow the API


def _openapi_with_request_schemas(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Add the JSON submission body, which the handler parses itself (it also takes multipart)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        extra = PathsJobCreate.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(extra.pop("$defs", {}))
        components["PathsJobCreate"] = extra
        return schema

    return openapi
