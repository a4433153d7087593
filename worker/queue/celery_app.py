"""The Celery app, built from settings by :func:`create_app`.

``celery -A ocrq.worker.queue.celery_app …`` finds ``app`` through the module
``__getattr__`` below, so the app (and its settings) come to life when a
worker or beat starts, not when something imports this module.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery
from celery.schedules import crontab
from kombu import Queue

from ocrq.errors import ConfigurationError
from ocrq.settings import Settings, build_settings

TASK_INGEST = "ocrq.ingest_document"
TASK_PAGE = "ocrq.ocr_page"
TASK_RECONCILE = "ocrq.reconcile"
TASK_INBOX = "ocrq.ingest_inbox"
TASK_REDO = "ocrq.redo_page"
SOFT_LIMIT_MARGIN_S = 30


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every reliability choice in one place; the reasons are in docs of celery_vllm_ops §1."""
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": 10,  # sweep for a dead worker's messages every ~30 s, not ~100 s
        "unacked_restore_throttle": 3,
        "priority_steps": list(range(10)),  # job priorities: one Redis list per level, 0 served first
        "queue_order_strategy": "priority",
    }
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.broker_url,  # short-lived status only; job state lives in our tables
        "result_expires": 3600,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "visibility_timeout": settings.visibility_timeout,
        "task_time_limit": settings.page_time_limit,
        "task_soft_time_limit": settings.page_time_limit - SOFT_LIMIT_MARGIN_S,
        "broker_connection_retry_on_startup": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "task_queues": [Queue(settings.gpu_queue), Queue(settings.cpu_queue)],
        "task_default_queue": settings.cpu_queue,
        "task_routes": {TASK_PAGE: {"queue": settings.gpu_queue}, TASK_REDO: {"queue": settings.gpu_queue}},
        "worker_hijack_root_logger": False,
        "beat_schedule": beat_schedule(settings),
        "timezone": "UTC",
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {
        "reconcile": {"task": TASK_RECONCILE, "schedule": float(settings.reconcile_interval)},
    }
    if settings.inbox_dir is not None:
        schedule["inbox"] = {"task": TASK_INBOX, "schedule": parse_crontab(settings.inbox_schedule)}
    return schedule


def parse_crontab(expression: str) -> crontab:
    fields = expression.split()
    if len(fields) != 5:
        raise ConfigurationError(f"OCRQ_INBOX_SCHEDULE {expression!r} is not 'minute hour day month weekday'")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return crontab(minute, hour, day_of_week, day_of_month, month_of_year)


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or build_settings()
    if not settings.broker_url:
        raise ConfigurationError("OCRQ_BROKER_URL is not set: Celery needs a broker (redis://…)")
    app = Celery("ocrq", include=["ocrq.worker.queue.tasks"])
    app.conf.update(celery_config(settings))
    app.ocrq_settings = settings
    return app


@lru_cache(maxsize=1)
def get_app() -> Celery:
    return create_app()


def __getattr__(name: str) -> Celery:
    if name == "app":
        return get_app()
    raise AttributeError(name)
