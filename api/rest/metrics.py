"""Prometheus metrics, read from the database at scrape time.

The database is where every worker records what it did, so one scrape of any
API process sees the whole cluster: no per-process counters to sum, nothing
lost when a worker restarts. Queue depth comes from the broker (Redis list
lengths) with one, from queued rows without.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import Attempt, Document, Job, Page, WebhookDelivery
from ocrq.jobs.degraded import is_degraded
from ocrq.schemas import PageStatus
from ocrq.settings import Settings

log = logging.getLogger("ocrq.api.metrics")

LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""A Tesseract page takes ~1 s on a CPU, a dots.ocr page tens of seconds under load."""


class OcrqCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions, self.settings = sessions, settings

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self.sessions() as session:
            yield _by_status(session, Job.status, "ocrq_jobs", "Jobs by status")
            yield _by_status(session, Document.status, "ocrq_documents", "Documents by status")
            yield _by_status(session, Page.status, "ocrq_pages", "Pages by status")
            yield _latency(session)
            yield _fallbacks(session)
            yield _degraded(session)
            yield _by_status(
                session,
                WebhookDelivery.outcome,
                "ocrq_webhook_deliveries",
                "Webhook attempts by outcome",
                "outcome",
            )
        yield self._queue_depth()

    def _queue_depth(self) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(
            "ocrq_queue_depth",
            "Tasks waiting in the broker (embedded: queued pages and documents)",
            labels=["queue"],
        )
        for queue, depth in self._depths().items():
            gauge.add_metric([queue], depth)
        return gauge

    def _depths(self) -> dict[str, float]:
        if self.settings.embedded:
            from ocrq.api.rest.admission import backlog

            return {"embedded": backlog(self.sessions)}
        from ocrq.worker.queue.broker_probe import RedisBrokerProbe

        probe = RedisBrokerProbe(self.settings.broker_url or "", self.settings.visibility_timeout)
        try:
            return {
                queue: probe.waiting(queue) for queue in (self.settings.gpu_queue, self.settings.cpu_queue)
            }
        except Exception as error:  # a scrape must still report the database side
            log.warning("queue depth unavailable: %s", error)
            return {}
        finally:
            probe.close()


def _by_status(
    session: Session, column: object, name: str, documentation: str, label: str = "status"
) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in session.execute(select(column, func.count()).group_by(column)):  # type: ignore[call-overload]
        gauge.add_metric([str(value)], count)
    return gauge


def _latency(session: Session) -> HistogramMetricFamily:
    """OCR time of pages done here (reused pages excluded: they took no time), by engine."""
    seconds = Page.ocr_ms / 1000.0
    buckets = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS_S]
    rows = session.execute(
        select(Page.engine, func.count(), func.sum(seconds), *buckets)
        .where(Page.status == PageStatus.DONE, Page.reused.is_(False), Page.ocr_ms.is_not(None))
        .group_by(Page.engine)
    )
    histogram = HistogramMetricFamily(
        "ocrq_page_ocr_seconds", "OCR time per page, by engine", labels=["engine"]
    )
    for engine, count, total, *cumulative in rows:
        pairs = [(str(b), float(c or 0)) for b, c in zip(LATENCY_BUCKETS_S, cumulative, strict=True)]
        histogram.add_metric([engine or "unknown"], [*pairs, ("+Inf", float(count))], float(total or 0.0))
    return histogram


def _fallbacks(session: Session) -> CounterMetricFamily:
    """Pages done by a later engine of the chain after an earlier one failed them."""
    fallen_back = session.scalar(
        select(func.count(func.distinct(Page.id)))
        .select_from(Page)
        .join(
            Attempt,
            and_(
                Attempt.page_id == Page.id,
                Attempt.outcome.not_in(("ok", "rejected")),  # "rejected": the text-layer gate's decision
                Attempt.engine != Page.engine,
            ),
        )
        .where(Page.status == PageStatus.DONE)
    )
    return CounterMetricFamily(
        "ocrq_page_fallbacks", "Pages an engine fallback rescued", value=fallen_back or 0
    )


def _degraded(session: Session) -> GaugeMetricFamily:
    """Done pages read by an engine other than their job's primary one (``ocrq redo --degraded``)."""
    rows = session.execute(
        select(Page.engine, func.count())
        .select_from(Page)
        .join(Document, Page.document_id == Document.id)
        .join(Job, Document.job_id == Job.id)
        .where(is_degraded())
        .group_by(Page.engine)
    )
    gauge = GaugeMetricFamily(
        "ocrq_pages_degraded", "Done pages a fallback engine read, by that engine", labels=["engine"]
    )
    for engine, count in rows:
        gauge.add_metric([engine or "unknown"], count)
    return gauge


def make_registry(sessions: sessionmaker[Session], settings: Settings) -> CollectorRegistry:
    """One registry per app (not the global one), so apps in one process do not collide."""
    from ocrq.worker.metrics import PROCESS_METRICS

    registry = CollectorRegistry(auto_describe=False)
    registry.register(OcrqCollector(sessions, settings))
    for metric in PROCESS_METRICS:  # pages this process OCRed (the embedded runner): counters for rate()
        registry.register(metric)
    return registry
