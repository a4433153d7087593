"""Redoing a job's degraded pages from its web page, in a real browser.

Degraded pages are made for real: the app's engines are vLLM then Tesseract, with no grace period,
and the vLLM is our loopback fault server (a real one cannot be made to die on cue). While it is
down a job's pages fall back to Tesseract; once it is back, the job page's button sends them to
vLLM again through the same door as ``POST /v1/jobs/{id}/redo``. The chain, runner, database,
Tesseract, uvicorn and Chromium are real.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocrq.settings import build_settings
from tests.api_support import make_key
from tests.factories import make_text_pdf
from tests.fault_server import FaultServer, Step, completion, running_fault_server
from tests.web_support import CHROMIUM, api, chromium, new_page, served, sign_in

playwright_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (scripts/dev installs it)", allow_module_level=True)

PAGES = 3
JOB_WAIT_S = 180
"""Generous: two cores shared with another engineer's full test run."""
LIVE_TIMEOUT_MS = 120_000
GATE_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def vllm() -> Iterator[FaultServer]:
    with running_fault_server() as server:
        yield server


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, vllm: FaultServer) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("web-redo")
    settings = build_settings(
        database_url=f"sqlite:///{folder / 'ocrq.db'}",
        engines=["vllm", "tesseract"], vllm_url=vllm.url, vllm_served_model_name="test-model",
        prompt_mode="text_only", vllm_retries=0, fallback_after_seconds=0,
        text_layer="off",  # the typed PDF stands in for a scan
        tesseract_langs="eng", output_dir=folder / "results", api_upload_dir=folder / "uploads",
        page_workers=2,
    )  # fmt: skip
    keys = {name: make_key(settings, name) for name in ("dave", "erin")}
    artifacts = Path(os.environ.get("OCRQ_WEB_ARTIFACTS") or folder / "screenshots")
    artifacts.mkdir(parents=True, exist_ok=True)
    with served(settings) as url:
        yield {"url": url, "keys": keys, "folder": folder, "artifacts": artifacts}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(playwright_api) as launched:
        yield launched


def submit_and_wait(web: dict[str, Any], who: str, name: str) -> dict[str, Any]:
    """A typed PDF of ``PAGES`` pages through the API, waited for until the job has ended."""
    pdf = make_text_pdf(web["folder"] / name, [f"Redo test page {n}" for n in range(PAGES)])
    response = httpx.post(
        web["url"] + "/v1/jobs",
        headers={"X-API-Key": web["keys"][who]},
        files=[("files", (pdf.name, pdf.read_bytes(), "application/pdf"))],
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job = api(web, who, f"/v1/jobs/{response.json()['id']}?wait={JOB_WAIT_S}")
    assert job["finished_at"] is not None, f"job {job['id']} did not end in {JOB_WAIT_S} s: {job}"
    return job


@pytest.fixture(scope="module")
def degraded_job(web: dict[str, Any], vllm: FaultServer) -> dict[str, Any]:
    """Dave's job, read while vLLM was down: every page fell back to Tesseract. vLLM is back after."""
    vllm.outage(600)
    try:
        job = submit_and_wait(web, "dave", "during-outage.pdf")
    finally:
        vllm.down_until = 0
    assert job["status"] == "done" and job["primary_engine"] == "vllm"
    assert job["counts"]["pages"]["degraded"] == PAGES and job["counts"]["engines"] == {"tesseract": PAGES}
    return job


def degraded_now(web: dict[str, Any], job_id: int) -> int:
    return api(web, "dave", f"/v1/jobs/{job_id}")["counts"]["pages"]["degraded"]


def page_engines(web: dict[str, Any], job_id: int) -> list[str]:
    documents = api(web, "dave", f"/v1/jobs/{job_id}/documents")["data"]
    pages = api(web, "dave", f"/v1/documents/{documents[0]['id']}/pages")["data"]
    return [one["engine"] for one in pages]


def csrf_token(page: Any) -> str:
    """The signed-in session's token, as every form on the page carries it (the sign-out form too)."""
    return page.locator('input[name="csrf"]').first.get_attribute("value")


def assert_fits_a_phone(page: Any, name: str) -> None:
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the {name} is {overflow} px wider than a 375 px screen"


@pytest.fixture
def held_vllm(vllm: FaultServer) -> Iterator[threading.Event]:
    """vLLM answers the next pages only once the test sets the event: the page is surely rendered
    while the redo runs, so its live progress is seen moving, on a machine of any speed."""
    gate = threading.Event()

    def answer(_request: dict[str, Any]) -> dict[str, Any]:
        gate.wait(GATE_TIMEOUT_S)
        return completion("Hello again")

    vllm.queue(*(Step(body=answer) for _ in range(PAGES)))
    try:
        yield gate
    finally:
        gate.set()
        vllm.script.clear()


def test_another_tenant_cannot_redo_the_job(
    web: dict[str, Any], browser: Any, degraded_job: dict[str, Any]
) -> None:
    job_id, before = degraded_job["id"], degraded_now(web, degraded_job["id"])
    page = new_page(browser)
    sign_in(page, web, "erin")
    request, url = page.context.request, web["url"]
    refused = request.post(f"{url}/jobs/{job_id}/redo", form={"csrf": csrf_token(page)})
    assert refused.status == 404 and "resource_not_found" in refused.text(), "as the API: not theirs"
    assert request.post(f"{url}/jobs/{job_id}/redo", form={"csrf": ""}).status == 422
    page.goto(f"{url}/jobs/{job_id}")
    assert page.get_by_role("button", name="Redo").count() == 0
    assert degraded_now(web, job_id) == before, "a refused redo sends nothing"


def test_the_owner_needs_the_form_token(
    web: dict[str, Any], browser: Any, degraded_job: dict[str, Any]
) -> None:
    job_id, before = degraded_job["id"], degraded_now(web, degraded_job["id"])
    page = new_page(browser)
    sign_in(page, web, "dave")
    request, url = page.context.request, web["url"]
    for token in ("", csrf_token(page)[:-2] + "xx"):
        missing = request.post(f"{url}/jobs/{job_id}/redo", form={"csrf": token})
        assert missing.status == 422 and "csrf_rejected" in missing.text()
    assert degraded_now(web, job_id) == before


def test_redo_degraded_pages_from_the_job_page(
    web: dict[str, Any], browser: Any, degraded_job: dict[str, Any], held_vllm: threading.Event
) -> None:
    job_id = degraded_job["id"]
    page = new_page(browser, width=375, height=812, is_mobile=True, has_touch=True)
    sign_in(page, web, "dave")
    message = click_redo(page, web, job_id)
    live = page.locator(f'[data-job-id="{job_id}"]')
    assert live.get_attribute("data-live-url") == f"/events/jobs?job={job_id}", "the page follows the redo"
    assert f"{PAGES} degraded" in live.locator('[data-field="pages"]').inner_text()

    held_vllm.set()  # vLLM answers: the page sees the count fall and drops the button by itself
    expect = playwright_api.expect
    expect(live.locator('[data-field="pages"]')).to_contain_text(" 0 degraded", timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Redo")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    expect(message).to_be_visible()
    page.screenshot(path=web["artifacts"] / "redo-done.png", full_page=True)
    assert degraded_now(web, job_id) == 0
    assert page_engines(web, job_id) == ["vllm"] * PAGES
    assert api(web, "dave", f"/v1/jobs/{job_id}")["counts"]["engines"] == {"vllm": PAGES}


def click_redo(page: Any, web: dict[str, Any], job_id: int) -> Any:
    """On a phone-wide screen: the button, the click, and the message the page answers with."""
    page.goto(f"{web['url']}/jobs/{job_id}")
    button = page.get_by_role("button", name=f"Redo {PAGES} degraded pages")
    assert button.is_visible()
    assert_fits_a_phone(page, "job page with its redo button")
    page.screenshot(path=web["artifacts"] / "redo-before.png", full_page=True)
    button.click()
    page.wait_for_url(f"**/jobs/{job_id}?redone={PAGES}")
    message = page.get_by_role("status")
    assert message.inner_text() == (
        f"{PAGES} degraded pages sent to vllm again; each keeps its current result until then."
    )
    assert_fits_a_phone(page, "job page with the redo message")
    page.screenshot(path=web["artifacts"] / "redo-sent.png", full_page=True)
    return message


def test_no_redo_button_without_degraded_pages(web: dict[str, Any], browser: Any, vllm: FaultServer) -> None:
    assert not vllm.is_down()
    job = submit_and_wait(web, "dave", "while-up.pdf")
    assert job["counts"]["pages"]["degraded"] == 0 and job["counts"]["engines"] == {"vllm": PAGES}
    page = new_page(browser)
    sign_in(page, web, "dave")
    page.goto(f"{web['url']}/jobs/{job['id']}")
    assert page.get_by_role("link", name="Markdown").first.is_visible(), "the finished job's page"
    assert page.get_by_role("button", name="Redo").count() == 0
    assert page.get_by_role("status").count() == 0
    stale = page.context.request.post(f"{web['url']}/jobs/{job['id']}/redo", form={"csrf": csrf_token(page)})
    assert stale.ok and stale.url.endswith(f"/jobs/{job['id']}?redone=0"), "a form from an older page"
    assert "No page of this job is degraded any more: nothing was sent." in stale.text()
