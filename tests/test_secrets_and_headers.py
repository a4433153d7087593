"""Secrets stay hidden (doctor, logs, error bodies), server paths stay on the server, responses carry
security headers, and Flower refuses weak passwords.

Each test plants passwords of its own and greps everything it captured for them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ocrq.api.cli import cli
from ocrq.db.migrations import upgrade
from ocrq.redaction import install_log_redaction, mask_text, mask_url
from ocrq.settings import Settings
from tests.api_support import running_api
from tests.factories import make_text_image
from tests.vllm_server import free_port

BROKER_PW, DB_PW, VLLM_PW, VLLM_TOKEN = "Broker-Secret-41", "Db-Secret-42", "Vllm-Secret-43", "VllmToken44"
HOOK_SECRET = "whsec_" + base64.b64encode(b"Hook-Secret-45-hook-secret-45-xx").decode()
PLANTED = (BROKER_PW, DB_PW, VLLM_PW, VLLM_TOKEN, HOOK_SECRET, "Hook-Secret-45")


def _assert_hidden(*captured: str) -> None:
    text = "\n".join(captured)
    found = [secret for secret in PLANTED if secret in text]
    assert found == [], f"secrets in the output: {found}"


def test_doctor_masks_every_credential(
    postgres_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade(postgres_url)
    database = postgres_url.replace("postgres@", f"postgres:{DB_PW}@")  # trust auth ignores it
    broker = redis_url.replace("redis://", f"redis://:{BROKER_PW}@")  # the test Redis has no password
    other = f"https://{VLLM_TOKEN}@127.0.0.2:{free_port()}"
    env = {
        "OCRQ_DATABASE_URL": database,
        "OCRQ_BROKER_URL": broker,
        "OCRQ_VLLM_URL": f"http://ops:{VLLM_PW}@127.0.0.1:{free_port()}",
        "OCRQ_VLLM_MODEL_URLS": f'{{"qwen2-vl-2b": "{other}"}}',
    }
    with caplog.at_level(logging.DEBUG):
        result = CliRunner().invoke(cli, ["-v", "doctor"], env=env)
    _assert_hidden(result.output, caplog.text)
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.strip()}
    assert "postgres:***@" in lines["database"] and lines["database"].startswith("ok")
    assert ":***@127.0.0.1" in lines["broker"]  # reported (here: refused by a Redis without AUTH), masked
    assert "ops:***@127.0.0.1" in result.output and "https://***@127.0.0.2" in result.output


@pytest.fixture
def broken_pdf(tmp_path: Path) -> Path:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)
    return path


def test_api_bodies_and_logs_hold_no_secret_and_no_server_path(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    broken_pdf: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """vLLM (with credentials in its URL) is down: the page error names it, masked; a broken PDF's
    error names the file as the client sent it, not where the server keeps it."""
    uploads = tmp_path / "server-side-uploads"
    settings = make_settings(
        engines=["vllm"],
        vllm_url=f"http://ops:{VLLM_PW}@127.0.0.1:{free_port()}",
        vllm_retries=0,
        fallback_after_seconds=0,  # the page fails now instead of waiting for the server to come back
        api_upload_dir=uploads,
        api_webhook_secret=HOOK_SECRET,
    )
    scan = tmp_path / "scan.png"
    make_text_image("A page for a server that is down").save(scan)
    bodies: list[str] = []
    with caplog.at_level(logging.INFO), running_api(settings) as api:
        job_id = api.upload(scan, broken_pdf).json()["id"]
        job = api.wait(job_id)
        documents = api.get(f"/v1/jobs/{job_id}/documents").json()["data"]
        page = api.get(f"/v1/documents/{documents[0]['id']}/pages/1")
        bodies += [api.get(f"/v1/jobs/{job_id}").text, page.text]
        bodies += [api.get(f"/v1/documents/{d['id']}").text for d in documents]
        bodies += [api.get(f"/v1/jobs/{job_id}/result", format=f).text for f in ("json", "jsonl", "md")]
        archive = zipfile.ZipFile(io.BytesIO(api.get(f"/v1/jobs/{job_id}/result", format="zip").content))
        bodies += [archive.read(name).decode() for name in archive.namelist()]
    _assert_hidden(*bodies, caplog.text)
    server_paths = [str(uploads.resolve()), str(tmp_path)]
    assert [p for p in server_paths for body in bodies if p in body] == []
    assert "ops:***@127.0.0.1" in page.json()["error"]["message"]  # the masked URL is still there to read
    (error,) = [e for e in job["errors"] if e["path"] == "broken.pdf"]
    assert error["code"] == "unreadable" and "Failed to open file 'broken.pdf'" in error["message"]


def test_log_records_are_masked_messages_and_tracebacks_alike(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    log = logging.getLogger("ocrq.tests.redaction")
    with caplog.at_level(logging.INFO):
        log.info("connecting to %s", f"redis://:{BROKER_PW}@10.0.0.5:6379/0")
        try:
            raise ConnectionError(f"cannot reach postgresql://ocrq:{DB_PW}@db/ocrq")
        except ConnectionError:
            log.exception("database down")
    _assert_hidden(caplog.text)
    assert "redis://:***@10.0.0.5" in caplog.text and "postgresql://ocrq:***@db" in caplog.text


def test_uvicorn_access_lines_still_format_and_their_secrets_are_masked() -> None:
    """uvicorn's access formatter unpacks the record's arguments itself: they must stay a 5-tuple."""
    from uvicorn.logging import AccessFormatter

    install_log_redaction()
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(
        AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s', use_colors=False)
    )
    access = logging.getLogger("ocrq.tests.access")
    access.addHandler(handler)
    access.propagate = False
    try:
        for path in ("/v1/jobs", "/v1/jobs?token=Tok-Secret-46"):
            access.warning('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
    finally:
        access.removeHandler(handler)
    lines = captured.getvalue().splitlines()
    assert lines == [
        '127.0.0.1:5000 "GET /v1/jobs HTTP/1.1" 200 OK',
        '127.0.0.1:5000 "GET /v1/jobs?token=*** HTTP/1.1" 200 OK',
    ]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://default:p@ss@h/0", "redis://default:***@h/0"),
        ("postgresql+psycopg://postgres@h/db", "postgresql+psycopg://postgres@h/db"),
        ("https://token123@h/v1", "https://***@h/v1"),
        ("https://h/hook?token=abc&x=1", "https://h/hook?token=***&x=1"),
        ("http://h:8000", "http://h:8000"),
    ],
)
def test_urls_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert mask_text(f"error at {url}: refused") == f"error at {shown}: refused"


def test_security_headers_and_a_strict_csp_on_html(make_settings: Callable[..., Settings]) -> None:
    with running_api(make_settings()) as api:
        jobs, docs = api.get("/v1/jobs"), api.client.get("/docs")
        health = api.client.get("/healthz")
    for response in (jobs, docs, health):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in response.headers  # not told about TLS
    assert jobs.headers["cache-control"] == "no-store"
    assert jobs.headers["content-security-policy"].startswith("default-src 'none'")
    policy = dict(part.strip().split(" ", 1) for part in docs.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy["script-src"] and "unsafe-eval" not in policy["script-src"]
    (inline,) = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy["script-src"]  # exactly the page's own inline script
    with running_api(make_settings(api_behind_tls=True)) as api:
        assert api.client.get("/healthz").headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.parametrize(
    ("basic_auth", "message"),
    [
        (None, "not served unauthenticated"),
        ("", "not served unauthenticated"),
        ("admin:", "empty or short"),
        ("admin:short-pw", "empty or short"),
        ("admin", "user:password"),
        ("ops:long-enough-password,guest:", "'guest'"),
    ],
)
def test_flower_refuses_empty_and_short_passwords(basic_auth: str | None, message: str) -> None:
    env = {"OCRQ_FLOWER_BASIC_AUTH": basic_auth, "OCRQ_BROKER_URL": "redis://127.0.0.1:9/0"}
    result = CliRunner().invoke(cli, ["flower"], env=env)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "long-enough-password" not in result.output and "short-pw" not in result.output
