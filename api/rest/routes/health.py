"""``/healthz`` (the process answers), ``/readyz`` (database and broker reachable), ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.deps import SessionsDep, SettingsDep
from ocrq.api.rest.schemas import Health

router = APIRouter(tags=["operations"])

PROBE_TIMEOUT_S = 2.0


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Alive: the process serves requests (says nothing about its dependencies)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(sessions: SessionsDep, settings: SettingsDep, response: Response) -> Health:
    """Ready: the database answers and, with a broker, so does Redis."""
    checks = {"database": _check(lambda: _ping_database(sessions))}
    if settings.broker_url:
        checks["broker"] = _check(lambda: _ping_broker(settings.broker_url or ""))
    ready = all(value == "ok" for value in checks.values())
    response.status_code = 200 if ready else 503
    return Health(status="ready" if ready else "unavailable", checks=checks)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format; jobs, documents and pages by status, OCR latency, fallbacks, queue depth."""
    body = await run_in_threadpool(generate_latest, request.app.state.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as error:  # reported, not raised: this endpoint exists to say what is down
        return f"error: {type(error).__name__}"
    return "ok"


def _ping_database(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        session.execute(text("SELECT 1"))


def _ping_broker(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S)
    try:
        client.ping()
    finally:
        client.close()
