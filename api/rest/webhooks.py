"""Completion webhooks: signed, retried with exponential backoff, every attempt recorded.

The sender is driven by job state, not by the code that finishes jobs: it
polls for finished jobs whose webhook is due, so a webhook is sent whichever
process (a Celery worker, the background runner) ended the job, and one left
due by a restart is sent after it. A conditional UPDATE claims each delivery,
so several API processes never send the same attempt twice.

Receivers verify ``X-Ocrq-Signature: sha256=HMAC(secret, "<timestamp>.<body>")``
and reject old ``X-Ocrq-Timestamp`` values to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.queries import job_detail
from ocrq.db.models import Job, WebhookDelivery, utcnow
from ocrq.jobs.retention import remove_expired_uploads
from ocrq.settings import Settings

log = logging.getLogger("ocrq.api.webhooks")

EVENT = "job.finished"
SIGNATURE_HEADER = "X-Ocrq-Signature"
TIMESTAMP_HEADER = "X-Ocrq-Timestamp"
CLAIM_MARGIN_S = 30.0
DUE_BATCH = 50


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookSender:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions, self.settings = sessions, settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = self._new_client()

    def _new_client(self) -> httpx.Client:
        """Redirects are not followed: a callback URL must not bounce the signed body elsewhere."""
        return httpx.Client(timeout=self.settings.api_webhook_timeout_s, follow_redirects=False)

    def start(self) -> None:
        """(Re)start the polling thread; an app's lifespan may run more than once in tests."""
        self._stop.clear()
        if self._client.is_closed:
            self._client = self._new_client()
        self._thread = threading.Thread(target=self._loop, name="ocrq-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.api_webhook_timeout_s + 5)
        self._client.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.api_webhook_poll_s):
            try:
                self.send_due()
                remove_expired_uploads(self.sessions, self.settings)  # beat does it too, with a broker
            except Exception:  # a database hiccup must not end the sender for good
                log.exception("webhook round failed")

    def send_due(self) -> int:
        """Try every webhook that is due now; returns how many attempts were made."""
        sent = 0
        for job_id in self._due():
            if self._claim(job_id):
                self._deliver(job_id)
                sent += 1
        return sent

    def _due(self) -> list[int]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Job.id)
                    .where(
                        Job.finished_at.is_not(None),
                        Job.webhook_status.in_(("pending", "sending")),
                        Job.webhook_due_at <= utcnow(),
                    )
                    .order_by(Job.webhook_due_at)
                    .limit(DUE_BATCH)
                )
            )

    def _claim(self, job_id: int) -> bool:
        """Take the delivery for one attempt; a claim left by a crashed sender lapses on its own."""
        now = utcnow()
        lease = timedelta(seconds=self.settings.api_webhook_timeout_s + CLAIM_MARGIN_S)
        with self.sessions.begin() as session:
            return bool(
                session.execute(
                    update(Job)
                    .where(
                        Job.id == job_id,
                        Job.webhook_status.in_(("pending", "sending")),
                        Job.webhook_due_at <= now,
                    )
                    .values(webhook_status="sending", webhook_due_at=now + lease)
                ).rowcount
            )

    def _deliver(self, job_id: int) -> None:
        url, attempt = self._target(job_id)
        body = self._payload(job_id)
        started, clock = utcnow(), time.perf_counter()
        status, error = self._post(url, body, f"{job_id}-{attempt}")
        outcome = "delivered" if error is None else "failed"
        duration_ms = (time.perf_counter() - clock) * 1000
        delivery = WebhookDelivery(
            job_id=job_id,
            attempt=attempt,
            url=url,
            started_at=started,
            duration_ms=duration_ms,
            status_code=status,
            outcome=outcome,
            error=error,
        )
        self._record(job_id, delivery)

    def _target(self, job_id: int) -> tuple[str, int]:
        """The callback URL and this attempt's number (1 + attempts recorded so far)."""
        with self.sessions() as session:
            url = session.get_one(Job, job_id).callback_url or ""
            done = session.scalar(
                select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
            )
        return url, (done or 0) + 1

    def _payload(self, job_id: int) -> bytes:
        job = job_detail(self.sessions, job_id).model_dump(mode="json", exclude={"webhook"})
        return json.dumps({"event": EVENT, "job": job}, ensure_ascii=False).encode()

    def _post(self, url: str, body: bytes, delivery_id: str) -> tuple[int | None, str | None]:
        """The receiver's status code and an error text (None when it took the webhook)."""
        timestamp = str(int(time.time()))
        secret = self.settings.api_webhook_secret
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ocrq-webhook",
            "X-Ocrq-Event": EVENT,
            "X-Ocrq-Delivery": delivery_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(secret.get_secret_value() if secret else "", timestamp, body),
        }
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return None, f"{type(error).__name__}: {error}"
        if response.is_success:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    def _record(self, job_id: int, delivery: WebhookDelivery) -> None:
        """Store the attempt; schedule the next one with exponential backoff, or give up."""
        values: dict[str, object] = {"webhook_status": "delivered", "webhook_due_at": None}
        if delivery.outcome != "delivered":
            values = self._after_failure(delivery.attempt)
            log.warning(
                "webhook for job %s failed (attempt %s): %s", job_id, delivery.attempt, delivery.error
            )
        with self.sessions.begin() as session:
            session.add(delivery)
            session.execute(update(Job).where(Job.id == job_id).values(**values))

    def _after_failure(self, attempt: int) -> dict[str, object]:
        if attempt >= self.settings.api_webhook_attempts:
            return {"webhook_status": "failed", "webhook_due_at": None}
        delay = self.settings.api_webhook_backoff_s * 2 ** (attempt - 1)
        return {"webhook_status": "pending", "webhook_due_at": utcnow() + timedelta(seconds=delay)}
