"""The REST API with a broker: real Postgres, real Redis, real ``ocrq worker`` processes.

The API only registers and enqueues here; workers started through the CLI do
the OCR, and the API reads their results from the database.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from ocrq.api.rest.deps import get_settings
from ocrq.db.migrations import upgrade
from ocrq.settings import Settings, build_settings
from tests.api_support import Api, as_key, make_key, running_api, webhook_receiver
from tests.factories import make_text_image, make_text_pdf
from tests.queue_harness import Processes

pytestmark = pytest.mark.slow

WEBHOOK_SECRET = "test-webhook-secret"
QUEUE_ENV = {"OCRQ_ENGINES": "tesseract", "OCRQ_TESSERACT_LANGS": "eng"}


@dataclass
class Cluster:
    settings: Settings
    processes: Processes
    docs: Path

    def api(self, **overrides: object) -> AbstractContextManager[Api]:
        return running_api(self.settings.model_copy(update=overrides))


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster]:
    monkeypatch.chdir(tmp_path)
    upgrade(postgres_url)
    env = QUEUE_ENV | {"OCRQ_DATABASE_URL": postgres_url, "OCRQ_BROKER_URL": redis_url}
    settings = build_settings(
        database_url=postgres_url,
        broker_url=redis_url,
        engines=["tesseract"],
        tesseract_langs="eng",
        api_upload_dir=tmp_path / "uploads",
        api_webhook_secret=WEBHOOK_SECRET,
        webhook_allow_http=True,
        webhook_allow_hosts=["127.0.0.1"],  # the receiver is a loopback server: allowed on purpose
        api_webhook_backoff_s=0.5,
        api_webhook_poll_s=0.1,
    )
    (tmp_path / "logs").mkdir()
    processes = Processes(env, tmp_path / "logs")
    docs = tmp_path / "docs"
    docs.mkdir()
    make_text_pdf(docs / "letter.pdf", ["Invoice seven for the archive", "Second page of letters"])
    make_text_image("Scanned receipt number nine").save(docs / "scan.png")
    (docs / "notes.pdf").write_text("plain text notes pretending to be a PDF\n")
    try:
        yield Cluster(settings, processes, docs)
    finally:
        processes.stop_all()


def test_upload_goes_through_real_workers_and_results_download(cluster: Cluster) -> None:
    cluster.processes.worker("w1")
    with cluster.api() as api:
        accepted = api.upload(*(cluster.docs / n for n in ("letter.pdf", "scan.png", "notes.pdf")))
        assert accepted.status_code == 202, accepted.text
        job = api.wait(accepted.json()["id"], seconds=60)
        assert job["status"] == "partial", job
        assert job["counts"]["pages"] == {"total": 3, "done": 3, "failed": 0, "degraded": 0}
        assert [(e["path"], e["code"]) for e in job["errors"]] == [("notes.pdf", "unsupported_type")]
        markdown = api.get(f"/v1/jobs/{job['id']}/result", format="md").text
        assert "invoice" in markdown.lower() and "receipt" in markdown.lower()
        archive = zipfile.ZipFile(io.BytesIO(api.get(f"/v1/jobs/{job['id']}/result", format="zip").content))
        assert "letter.pdf.md" in archive.namelist()
        ready = api.client.get("/readyz").json()
        assert ready == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}
        metrics = api.client.get("/metrics").text
    assert 'ocrq_queue_depth{queue="gpu"} 0.0' in metrics and 'ocrq_queue_depth{queue="cpu"} 0.0' in metrics
    assert 'ocrq_page_ocr_seconds_count{engine="tesseract"} 1.0' in metrics  # the scan
    assert 'ocrq_page_ocr_seconds_count{engine="text_layer"} 2.0' in metrics  # the typed letter


def test_a_webhook_that_fails_first_is_retried_with_backoff_signed_and_recorded(cluster: Cluster) -> None:
    cluster.processes.worker("w1")
    with webhook_receiver([500]) as receiver, cluster.api() as api:
        options = {"callback_url": receiver.url}
        job_id = api.upload(cluster.docs / "scan.png", options=options).json()["id"]
        assert api.wait(job_id)["status"] == "done"
        deadline = time.monotonic() + 30
        while len(receiver.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        job = api.get(f"/v1/jobs/{job_id}").json()
    first, second = receiver.requests
    assert second.at - first.at >= 0.45  # api_webhook_backoff_s before the second attempt
    verifier = Webhook(WEBHOOK_SECRET.encode())  # a plain-string secret is the key's bytes
    for request in (first, second):
        verifier.verify(request.body, request.headers)  # Standard Webhooks: raises unless authentic
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    payload = json.loads(second.body)
    assert payload["type"] == "job.finished"
    assert (payload["data"]["job"]["id"], payload["data"]["job"]["status"]) == (job_id, "done")
    webhook = job["webhook"]
    assert webhook["status"] == "delivered" and webhook["url"] == receiver.url
    outcomes = [(d["attempt"], d["status_code"], d["outcome"]) for d in webhook["deliveries"]]
    assert outcomes == [(1, 500, "failed"), (2, 200, "delivered")]


def test_backlog_over_the_limit_is_a_503_with_retry_after(cluster: Cluster) -> None:
    """No worker runs, so accepted documents stay queued and count as backlog."""
    with cluster.api(api_retry_after_s=17) as api:
        first = api.upload(cluster.docs / "scan.png", cluster.docs / "letter.pdf")
        assert first.status_code == 202
        api.client.app.dependency_overrides[get_settings] = lambda: cluster.settings.model_copy(  # type: ignore[attr-defined]
            update={"api_backlog_limit": 2}
        )
        refused = api.upload(cluster.docs / "scan.png")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "17"
        assert refused.json()["error"]["code"] == "overloaded"
        metrics = api.client.get("/metrics").text
        assert 'ocrq_queue_depth{queue="cpu"} 2.0' in metrics  # the two ingest tasks, waiting in Redis
        started = time.monotonic()
        waited = api.wait(first.json()["id"], seconds=1)
        assert waited["status"] == "queued" and time.monotonic() - started >= 1.0
        cancelled = api.client.delete(f"/v1/jobs/{first.json()['id']}", headers=api.headers)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        api.client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
        assert api.upload(cluster.docs / "scan.png").status_code == 202  # cancelled work left the backlog


def test_readiness_fails_when_the_broker_is_unreachable(cluster: Cluster) -> None:
    with cluster.api(broker_url="redis://127.0.0.1:1/0") as api:
        response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["broker"].startswith("error")


def test_a_key_over_its_page_quota_gets_429_while_another_key_still_submits(cluster: Cluster) -> None:
    """No worker runs: accepted pages stay waiting and count against their key's quota."""
    two_pages = cluster.docs / "letter.pdf"
    with cluster.api(api_key_max_queued_pages=3, api_retry_after_s=11) as alpha:
        bravo = as_key(alpha, make_key(alpha.settings, "bravo"))
        first = alpha.upload(two_pages)
        assert first.status_code == 202, first.text
        refused = alpha.upload(two_pages)  # 2 waiting + 2 more > 3
        assert refused.status_code == 429 and refused.headers["retry-after"] == "11"
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert "2 pages waiting" in refused.json()["error"]["message"]
        assert bravo.upload(two_pages).status_code == 202  # another tenant is not held up
        assert alpha.upload(cluster.docs / "scan.png").status_code == 202  # 2 + 1 fits exactly
        assert alpha.get("/v1/jobs").json()["count"] == 2
        cancelled = alpha.client.delete(f"/v1/jobs/{first.json()['id']}", headers=alpha.headers)
        assert cancelled.status_code == 200
        assert alpha.upload(two_pages).status_code == 202  # a finished job's pages no longer count
    with cluster.api(api_key_max_queued_pages=1) as small:
        too_big = small.upload(two_pages)
        assert too_big.status_code == 413 and "split it" in too_big.json()["error"]["message"]
