"""Page counters move as pages finish (real Tesseract, embedded run), show on the API's /metrics, and a
worker exports them on its own port."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
from prometheus_client import REGISTRY

from ocrq.settings import Settings
from ocrq.worker.batch import BatchRequest, run_embedded_batch
from tests.api_support import running_api
from tests.factories import make_text_image


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_counters_count_each_page_attempt_and_stage(tmp_path: Path, make_settings) -> None:
    settings: Settings = make_settings(engines=["tesseract"])
    scans = tmp_path / "scans"
    scans.mkdir()
    for n in range(3):
        make_text_image(f"Counted page number {n}").save(scans / f"p{n}.png")
    (scans / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 50)
    before = {
        "done": sample("ocrq_pages_processed_total", engine="tesseract", status="done"),
        "attempts": sample("ocrq_engine_attempts_total", engine="tesseract", outcome="ok"),
        "ocr": sample("ocrq_page_seconds_count", stage="ocr"),
        "render": sample("ocrq_page_seconds_count", stage="render"),
    }
    run_embedded_batch(settings, BatchRequest([scans], tmp_path / "out", False))
    assert sample("ocrq_pages_processed_total", engine="tesseract", status="done") - before["done"] == 3
    assert sample("ocrq_engine_attempts_total", engine="tesseract", outcome="ok") - before["attempts"] == 3
    assert sample("ocrq_page_seconds_count", stage="ocr") - before["ocr"] == 3
    assert sample("ocrq_page_seconds_count", stage="render") - before["render"] == 3
    with running_api(settings) as api:
        text = api.client.get("/metrics").text
    assert 'ocrq_pages_processed_total{engine="tesseract",status="done"}' in text
    assert "ocrq_page_seconds_bucket" in text


def test_a_worker_exports_its_counters_on_a_port() -> None:
    from ocrq.worker.metrics import serve_metrics

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve_metrics(port)
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "# TYPE ocrq_pages_processed_total counter" in body
    assert "# TYPE ocrq_page_seconds histogram" in body


def test_the_grafana_dashboard_graphs_only_metrics_ocrq_exports(make_settings) -> None:
    """Every metric a panel queries is one the API or a worker really exports."""
    import json
    import re

    from tests.conftest import REPO_ROOT

    dashboard = json.loads((REPO_ROOT / "deploy" / "grafana" / "ocrq-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(ocrq_\w+)", target["expr"])
    }
    with running_api(make_settings()) as api:
        exported = set(re.findall(r"^# TYPE (\w+)", api.client.get("/metrics").text, re.MULTILINE))
    exported |= {f"{name}_bucket" for name in exported} | {f"{name}_total" for name in exported}
    assert {"ocrq_pages_processed_total", "ocrq_page_seconds_bucket", "ocrq_queue_depth"} <= queried
    assert queried <= exported, queried - exported
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    assert all(word in titles for word in ("pages per second", "p95", "fallback", "queue depth"))


def test_breaker_state_and_in_flight_cap_are_gauges(make_settings) -> None:
    import socket as sockets

    from ocrq.worker.engines.selection import build_chain
    from ocrq.worker.metrics import watch_chain

    with sockets.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(
        engines=["vllm", "tesseract"], vllm_url=f"http://127.0.0.1:{port}", vllm_max_in_flight=7
    )
    chain = watch_chain(build_chain(settings))
    try:
        names = [engine.name for engine in chain.engines]
        assert sample("ocrq_engine_circuit_open", engine="tesseract") == 0.0
        breaker = chain.breakers[names.index("tesseract")]
        for _ in range(breaker.failure_threshold):
            breaker.record_failure()
        assert sample("ocrq_engine_circuit_open", engine="tesseract") == 1.0
        assert names == ["vllm", "tesseract"]
        assert sample("ocrq_engine_in_flight_cap", engine="vllm") >= 7.0
    finally:
        chain.close()
        del chain


def test_celery_task_lines_carry_the_ids_of_the_task() -> None:
    """Celery's own lines (``Task ... succeeded``) run between these signals, so they get the ids."""
    import structlog
    from celery.signals import task_postrun, task_prerun

    from ocrq.worker.queue.tasks import ocr_page_task

    task_prerun.send(sender=ocr_page_task, task_id="t1", task=ocr_page_task, args=(41, 7), kwargs={})
    try:
        bound = structlog.contextvars.get_contextvars()
        assert (bound.get("page_id"), bound.get("job_id")) == (41, 7)
    finally:
        task_postrun.send(sender=ocr_page_task, task_id="t1", task=ocr_page_task, args=(41, 7), kwargs={})
    remaining = structlog.contextvars.get_contextvars()
    assert "page_id" not in remaining and "job_id" not in remaining
