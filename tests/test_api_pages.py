"""``links.pages`` leads somewhere: the list of a document's pages with every engine attempt, and the
attempts in the page resource too (real app, real Tesseract, a vLLM URL with nothing behind it)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from ocrq.settings import Settings
from tests.api_support import running_api
from tests.factories import make_text_pdf


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_pages_list_and_page_show_attempts_per_engine(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        engines=["vllm", "tesseract"],
        vllm_url=f"http://127.0.0.1:{closed_port()}",
        vllm_retries=0,
        text_layer="off",  # the typed PDF stands in for a scan: both engines must be tried per page
        fallback_after_seconds=0,  # the attempts are listed here; the outage grace in test_fallback_grace
    )
    make_text_pdf(tmp_path / "two.pdf", ["First page of the letter", "Second page of the letter"])
    with running_api(settings) as api:
        job = api.upload(tmp_path / "two.pdf").json()
        api.wait(job["id"])
        (document,) = api.get(f"/v1/jobs/{job['id']}/documents").json()["data"]
        listed = api.get(document["links"]["pages"])
        assert listed.status_code == 200, listed.text
        pages = listed.json()
        one = api.get(pages["data"][0]["self"]).json()
        second_half = api.get(document["links"]["pages"], limit=1, offset=1).json()
    assert pages["count"] == 2 and [p["number"] for p in pages["data"]] == [1, 2]
    for page in pages["data"]:
        assert page["status"] == "done" and page["engine"] == "tesseract"
        engines = [attempt["engine"] for attempt in page["attempts"]]
        assert engines[-1] == "tesseract" and page["attempts"][-1]["outcome"] == "ok"
    assert any(a["engine"] == "vllm" and a["outcome"] != "ok" for p in pages["data"] for a in p["attempts"])
    assert one["attempts"] == pages["data"][0]["attempts"] and "text" in one
    assert [p["number"] for p in second_half["data"]] == [2] and second_half["count"] == 2
