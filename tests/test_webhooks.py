"""Webhooks cannot reach inside, and arrive signed the Standard Webhooks way.

Every hostile URL points at a live listener on 127.0.0.1 (or at addresses
nothing here answers on); the listener records every request it gets and must
get none. Plain ``http`` is allowed in these tests on purpose, so it is the
address policy, not the scheme rule, that refuses them. Host names are
resolved by a resolver the test injects: no DNS, no /etc/hosts. Positive
controls show the same listener *is* called when an operator allows it, so
"never called" means refused, not broken.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from ocrq.api.rest.webhook_policy import IPAddress, WebhookPolicy
from ocrq.errors import CallbackNotAllowed
from ocrq.settings import Settings
from tests.api_support import Api, WebhookReceiver, running_api, webhook_receiver
from tests.factories import make_text_image
from tests.vllm_server import free_port

SECRET = "whsec_" + base64.b64encode(b"ocrq-test-webhook-secret-32bytes").decode()
PUBLIC = "93.184.216.34"
"""A public address; the tests only ever resolve to it at submission, never connect to it."""


@dataclass
class FakeDns:
    """Names to addresses, answers in turn (the last one repeats); counts every lookup."""

    answers: dict[str, list[list[str]]]
    lookups: list[str] = field(default_factory=list)

    def __call__(self, host: str, _port: int) -> list[IPAddress]:
        self.lookups.append(host)
        if host not in self.answers:
            raise OSError(f"{host}: no such name")
        turns = self.answers[host]
        answer = turns.pop(0) if len(turns) > 1 else turns[0]
        return [ip_address(a) for a in answer]


@pytest.fixture
def listener() -> Iterator[WebhookReceiver]:
    """The loopback service hostile URLs aim at."""
    with webhook_receiver([]) as receiver:
        yield receiver


@pytest.fixture
def hook_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "tesseract_langs": "eng",
            "api_upload_dir": tmp_path / "uploads",
            "api_webhook_secret": SECRET,
            "api_webhook_poll_s": 0.1,
            "api_webhook_backoff_s": 0.2,
            "api_webhook_attempts": 2,
            "webhook_allow_http": True,
        }
        return make_settings(**(base | overrides))

    return build


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    path = tmp_path / "hook-scan.png"
    make_text_image("Webhook test page").save(path)
    return path


def _hostile(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/hook",
        f"https://127.0.0.1:{port}/hook",
        f"http://user:pw@127.0.0.1:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://0.0.0.0:{port}/hook",
        f"http://localhost:{port}/hook",
        f"http://loopback-alias.test:{port}/hook",  # resolves to 127.0.0.1
        f"http://mixed.test:{port}/hook",  # one public address, one loopback
        "http://169.254.169.254/latest/meta-data/iam/",
        f"http://10.0.0.1:{port}/",
        f"http://172.16.5.4:{port}/",
        f"http://192.168.1.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/hook",  # IPv4-mapped
        f"http://[::ffff:7f00:1]:{port}/hook",
        f"http://[::127.0.0.1]:{port}/hook",  # IPv4-compatible
        f"http://[2002:7f00:1::]:{port}/hook",  # 6to4 around 127.0.0.1
        f"http://[64:ff9b::a9fe:a9fe]:{port}/",  # NAT64 around 169.254.169.254
        f"http://[fd00::1]:{port}/",
        f"http://[fe80::1]:{port}/",
        f"http://2130706433:{port}/hook",  # decimal 127.0.0.1
        f"http://0177.0.0.1:{port}/hook",  # octal
        f"http://0x7f.0.0.1:{port}/hook",  # hex
        f"http://127.1:{port}/hook",
    ]


DNS_TABLE = {"loopback-alias.test": [["127.0.0.1"]], "mixed.test": [[PUBLIC, "127.0.0.1"]]}


def _submit(api: Api, scan: Path, url: str) -> Any:
    return api.upload(scan, options={"callback_url": url})


def _wait_webhook(api: Api, job_id: int, timeout: float = 30) -> dict[str, Any]:
    """The job once its webhook is settled (delivered or failed for good)."""
    deadline = time.monotonic() + timeout
    api.wait(job_id)
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["webhook"]["status"] in ("delivered", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"the webhook of job {job_id} did not settle: {job['webhook']}")


def test_hostile_callback_urls_are_refused_and_the_listener_is_never_called(
    hook_settings: Callable[..., Settings], listener: WebhookReceiver, scan: Path
) -> None:
    with running_api(hook_settings(), FakeDns(dict(DNS_TABLE))) as api:
        for url in _hostile(listener.port):
            response = _submit(api, scan, url)
            assert response.status_code == 422, (url, response.text)
            assert response.json()["error"]["code"] in ("callback_not_allowed", "invalid_request"), url
        assert api.get("/v1/jobs").json()["count"] == 0
        time.sleep(0.5)  # several sender rounds
    assert listener.requests == []
    # the positive control: the very same listener is reached once an operator allows it
    allowed = hook_settings(webhook_allow_hosts=["127.0.0.1"])
    with running_api(allowed) as api:
        job = _wait_webhook(api, _submit(api, scan, listener.url).json()["id"])
    assert job["webhook"]["status"] == "delivered" and len(listener.requests) == 1


def test_https_is_required_unless_plain_http_is_allowed(
    hook_settings: Callable[..., Settings], scan: Path
) -> None:
    with running_api(hook_settings(webhook_allow_http=False), FakeDns({"hooks.test": [[PUBLIC]]})) as api:
        plain = _submit(api, scan, "http://hooks.test/cb")
        assert plain.status_code == 422 and "https" in plain.json()["error"]["message"]
        assert api.get("/v1/jobs").json()["count"] == 0


def test_a_public_host_that_redirects_to_loopback_is_not_followed(
    hook_settings: Callable[..., Settings], listener: WebhookReceiver, scan: Path
) -> None:
    """A loopback server plays the public receiver, let through by name; it answers 302 to the listener."""
    with webhook_receiver([], redirect_to=listener.url) as public:
        dns = FakeDns({"public.test": [["127.0.0.1"]]})
        settings = hook_settings(webhook_allow_hosts=["public.test"])
        with running_api(settings, dns) as api:
            refused = _submit(api, scan, listener.url)  # the redirect's target, asked for directly
            assert refused.status_code == 422, refused.text
            job = _wait_webhook(
                api, _submit(api, scan, f"http://public.test:{public.port}/hook").json()["id"]
            )
    outcomes = [(d["status_code"], d["outcome"]) for d in job["webhook"]["deliveries"]]
    assert outcomes == [(302, "failed"), (302, "failed")]
    assert len(public.requests) == 2 and public.requests[0].headers["Host"] == f"public.test:{public.port}"
    assert listener.requests == []


def test_a_name_that_turns_to_loopback_after_submission_is_refused_at_delivery(
    hook_settings: Callable[..., Settings], listener: WebhookReceiver, scan: Path
) -> None:
    """DNS rebinding: public when checked at submission, loopback when the webhook is due."""
    dns = FakeDns({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    with running_api(hook_settings(), dns) as api:
        accepted = _submit(api, scan, f"http://rebind.test:{listener.port}/hook")
        assert accepted.status_code == 202, accepted.text
        job = _wait_webhook(api, accepted.json()["id"])
    assert [d["outcome"] for d in job["webhook"]["deliveries"]] == ["unreachable", "unreachable"]
    assert dns.lookups.count("rebind.test") == 3  # submission, then once per attempt
    assert listener.requests == []


def test_the_request_goes_to_the_address_that_was_checked(
    hook_settings: Callable[..., Settings], listener: WebhookReceiver, scan: Path
) -> None:
    """``pinned.test`` exists only in the injected resolver: had the HTTP client looked the name up
    again itself, the delivery could not have arrived."""
    dns = FakeDns({"pinned.test": [["127.0.0.1"]]})
    with running_api(hook_settings(webhook_allow_hosts=["pinned.test"]), dns) as api:
        job = _wait_webhook(api, _submit(api, scan, f"http://pinned.test:{listener.port}/hook").json()["id"])
    assert job["webhook"]["status"] == "delivered"
    (request,) = listener.requests
    assert request.headers["Host"] == f"pinned.test:{listener.port}"
    assert dns.lookups == ["pinned.test", "pinned.test"]  # submission, delivery: one lookup each


def test_deliveries_are_standard_webhooks_with_a_stable_id_and_absolute_links(
    hook_settings: Callable[..., Settings], scan: Path
) -> None:
    settings = hook_settings(webhook_allow_hosts=["127.0.0.1"], api_public_url="https://ocr.example.org/")
    with webhook_receiver([503]) as receiver, running_api(settings) as api:
        job_id = _submit(api, scan, receiver.url).json()["id"]
        job = _wait_webhook(api, job_id)
    first, second = receiver.requests
    verifier = Webhook(SECRET)
    for request in (first, second):  # what a receiver does with the package: raises if not authentic
        payload = verifier.verify(request.body, request.headers)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # receivers deduplicate by it
    assert payload["type"] == "job.finished" and payload["timestamp"] == job["finished_at"]
    links = payload["data"]["job"]["links"]
    assert links["self"] == f"https://ocr.example.org/v1/jobs/{job_id}"
    assert links["result"] == f"https://ocr.example.org/v1/jobs/{job_id}/result"
    tampered = dict(first.headers) | {"webhook-id": "msg_other"}
    with pytest.raises(Exception, match="signature"):
        verifier.verify(first.body, tampered)
    deliveries = job["webhook"]["deliveries"]
    assert [(d["attempt"], d["status_code"], d["outcome"]) for d in deliveries] == [
        (1, 503, "failed"),
        (2, 200, "delivered"),
    ]


def test_an_unreachable_receiver_shows_no_connection_details(
    hook_settings: Callable[..., Settings], scan: Path
) -> None:
    """Connection errors would tell a port scanner which ports are open: the owner sees one word."""
    closed = f"http://hookuser:hook-password-9@127.0.0.1:{free_port()}/hook"
    with running_api(hook_settings(webhook_allow_hosts=["127.0.0.1"])) as api:
        job = _wait_webhook(api, _submit(api, scan, closed).json()["id"])
        text = api.get(f"/v1/jobs/{job['id']}").text
    assert [(d["status_code"], d["outcome"]) for d in job["webhook"]["deliveries"]] == [
        (None, "unreachable"),
        (None, "unreachable"),
    ]
    assert job["webhook"]["status"] == "failed"
    for leak in ("Errno", "refused", "ConnectError", "hook-password-9"):
        assert leak not in text, leak
    assert job["webhook"]["url"].startswith("http://hookuser:***@127.0.0.1:")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.test/cb", True),
        ("https://intranet.test/cb", False),  # resolves to 10.1.2.3
        ("https://10.1.2.3/cb", False),
        ("https://[fd12::5]/cb", False),
        ("https://[::ffff:10.1.2.3]/cb", False),  # the same address in IPv6 notation
    ],
)
def test_private_addresses_open_only_with_allow_private(url: str, allowed: bool) -> None:
    dns = FakeDns({"hooks.test": [[PUBLIC]], "intranet.test": [["10.1.2.3"]]})
    strict, intranet = WebhookPolicy(resolver=dns), WebhookPolicy(allow_private=True, resolver=dns)
    if allowed:
        assert str(strict.check(url).address) == PUBLIC
    else:
        with pytest.raises(CallbackNotAllowed, match="private"):
            strict.check(url)
    assert intranet.check(url).url.host  # intranets open deliberately
    for inside in ("https://127.0.0.1/", "https://169.254.169.254/", "https://[::1]/"):
        with pytest.raises(CallbackNotAllowed):  # loopback and link-local stay closed
            intranet.check(inside)


def test_refusals_name_the_kind_of_address_not_what_a_name_resolved_to() -> None:
    dns = FakeDns({"db.internal.test": [["10.9.8.7"]]})
    with pytest.raises(CallbackNotAllowed) as refused:
        WebhookPolicy(resolver=dns).check("https://db.internal.test/")
    assert "private" in refused.value.message and "10.9.8.7" not in refused.value.message


def test_the_payload_is_json_with_the_job_and_no_webhook_state(
    hook_settings: Callable[..., Settings], scan: Path
) -> None:
    allowed = hook_settings(webhook_allow_hosts=["127.0.0.1"])
    with webhook_receiver([]) as receiver, running_api(allowed) as api:
        _wait_webhook(api, _submit(api, scan, receiver.url).json()["id"])
    body = json.loads(receiver.requests[0].body)
    assert set(body) == {"type", "timestamp", "data"} and "webhook" not in body["data"]["job"]
    assert body["data"]["job"]["links"]["self"].startswith("/v1/jobs/")  # relative without a public URL
