"""Completion webhooks: Standard Webhooks signatures, retried with backoff, every attempt recorded.

The sender is driven by job state, not by the code that finishes jobs: it
polls for finished jobs whose webhook is due, so a webhook is sent whichever
process (a Celery worker, the background runner) ended the job, and one left
due by a restart is sent after it. A conditional UPDATE claims each delivery,
so several API processes never send the same attempt twice.

Deliveries follow https://www.standardwebhooks.com: ``webhook-id`` (the same
on every retry, so receivers deduplicate), ``webhook-timestamp`` and
``webhook-signature``, made by the ``standardwebhooks`` package, which
receivers use to verify. Each attempt re-checks the URL against the
:class:`~ocrq.api.rest.webhook_policy.WebhookPolicy` and connects to the checked address.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from ocrq.api.rest.queries import job_detail
from ocrq.api.rest.webhook_policy import CallbackTarget, WebhookPolicy
from ocrq.db.models import Job, WebhookDelivery, utcnow
from ocrq.db.session import rows_changed
from ocrq.errors import CallbackNotAllowed
from ocrq.jobs.access import OPERATOR
from ocrq.jobs.retention import remove_expired_uploads
from ocrq.redaction import mask_text, mask_url
from ocrq.settings import Settings

log = logging.getLogger("ocrq.api.webhooks")

EVENT = "job.finished"
CLAIM_MARGIN_S = 30.0
DUE_BATCH = 50


def signer(secret: str) -> Webhook:
    """A ``whsec_<base64>`` secret as Standard Webhooks defines it; any other string is the key's bytes."""
    return Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())


def webhook_id(job: Job) -> str:
    """One id per job's completion, the same on every retry (receivers deduplicate by it).

    The creation time is hashed in, so a job id reused by a rebuilt database is a new message.
    """
    seed = f"{job.id}:{job.created_at.isoformat()}:{job.result_key}".encode()
    return f"msg_ocrq_{job.id}_{hashlib.sha256(seed).hexdigest()[:16]}"


class WebhookSender:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings, policy: WebhookPolicy) -> None:
        self.sessions, self.settings, self.policy = sessions, settings, policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = self._new_client()

    def _new_client(self) -> httpx.Client:
        """No redirects (the signed body must not bounce elsewhere), no proxies from the environment
        (a proxy would connect to the name again, not to the address the policy checked)."""
        return httpx.Client(
            timeout=self.settings.api_webhook_timeout_s, follow_redirects=False, trust_env=False
        )

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
                rows_changed(
                    session,
                    update(Job)
                    .where(
                        Job.id == job_id,
                        Job.webhook_status.in_(("pending", "sending")),
                        Job.webhook_due_at <= now,
                    )
                    .values(webhook_status="sending", webhook_due_at=now + lease),
                )
            )

    def _deliver(self, job_id: int) -> None:
        url, attempt, message_id = self._target(job_id)
        body = self._payload(job_id)
        started, clock = utcnow(), time.perf_counter()
        outcome, status, error = self._attempt(url, body, message_id)
        delivery = WebhookDelivery(
            job_id=job_id,
            attempt=attempt,
            url=mask_url(url),
            started_at=started,
            duration_ms=(time.perf_counter() - clock) * 1000,
            status_code=status,
            outcome=outcome,
            error=mask_text(error) if error else None,
        )
        self._record(job_id, delivery)

    def _target(self, job_id: int) -> tuple[str, int, str]:
        """The callback URL, this attempt's number (1 + attempts so far) and the message's id."""
        with self.sessions() as session:
            job = session.get_one(Job, job_id)
            done = session.scalar(
                select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
            )
            return job.callback_url or "", (done or 0) + 1, webhook_id(job)

    def _payload(self, job_id: int) -> bytes:
        """Standard Webhooks' envelope: type, the event's time, data (links absolute with a public URL)."""
        detail = job_detail(self.sessions, OPERATOR, job_id, origin=self.settings.api_public_url or "")
        job = detail.model_dump(mode="json", exclude={"webhook"})
        envelope = {"type": EVENT, "timestamp": job["finished_at"], "data": {"job": job}}
        return json.dumps(envelope, ensure_ascii=False).encode()

    def _attempt(self, url: str, body: bytes, message_id: str) -> tuple[str, int | None, str | None]:
        """``(outcome, status code, error for the server log)``; the address is checked again each time,
        since what a name resolves to may have changed since submission."""
        secret = self.settings.api_webhook_secret
        if not (secret and secret.get_secret_value()):
            return "failed", None, "not sent: OCRQ_API_WEBHOOK_SECRET is no longer set"
        try:
            target = self.policy.check(url)
        except CallbackNotAllowed as refused:
            return "unreachable", None, f"refused at delivery: {refused.message}"
        try:
            response = self._post(target, body, message_id, secret.get_secret_value())
        except httpx.HTTPError as error:
            return "unreachable", None, f"{type(error).__name__}: {error}"
        if response.is_success:
            return "delivered", response.status_code, None
        return "failed", response.status_code, f"HTTP {response.status_code}"

    def _post(self, target: CallbackTarget, body: bytes, message_id: str, secret: str) -> httpx.Response:
        now = datetime.now(UTC)
        signature = signer(secret).sign(message_id, now, body.decode())
        headers = target.headers() | {
            "Content-Type": "application/json",
            "User-Agent": "ocrq-webhook",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        return self._client.post(
            target.request_url(), content=body, headers=headers, extensions=target.extensions()
        )

    def _record(self, job_id: int, delivery: WebhookDelivery) -> None:
        """Store the attempt; schedule the next one with exponential backoff, or give up."""
        values: dict[str, object] = {"webhook_status": "delivered", "webhook_due_at": None}
        if delivery.outcome != "delivered":
            values = self._after_failure(delivery.attempt)
            log.warning(
                "webhook for job %s %s (attempt %s): %s",
                job_id,
                delivery.outcome,
                delivery.attempt,
                delivery.error,
            )
        with self.sessions.begin() as session:
            session.add(delivery)
            session.execute(update(Job).where(Job.id == job_id).values(**values))

    def _after_failure(self, attempt: int) -> dict[str, object]:
        if attempt >= self.settings.api_webhook_attempts:
            return {"webhook_status": "failed", "webhook_due_at": None}
        delay = self.settings.api_webhook_backoff_s * 2 ** (attempt - 1)
        return {"webhook_status": "pending", "webhook_due_at": utcnow() + timedelta(seconds=delay)}
