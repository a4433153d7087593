"""``/docs`` and ``/redoc`` render with no network: a real uvicorn, a real Chromium, every request
that leaves loopback refused and recorded. FastAPI's default pages (CDN assets) fail this test."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest
import uvicorn

from ocrq.api.rest.app import create_app
from ocrq.settings import Settings

PORT = 28_081
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=PORT, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{PORT}"
    server.should_exit = True
    thread.join(10)


def test_docs_pages_name_only_local_assets_and_serve_them(served: str) -> None:
    with httpx.Client(base_url=served) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            assert "cdn" not in html.lower() and "googleapis" not in html, page
            assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
            assert assets, page
            for asset in assets:
                assert not urlparse(asset).netloc, f"{page} loads {asset} from another host"
                response = client.get(asset)
                assert response.status_code == 200 and len(response.content) > 1000, asset


@pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM), reason="needs Debian's chromium")
@pytest.mark.parametrize(
    ("page", "rendered"),
    [("/docs", ".swagger-ui .opblock-summary-path"), ("/redoc", "[data-section-id] h2")],
)
def test_docs_render_in_a_browser_without_network(served: str, page: str, rendered: str) -> None:
    from playwright.sync_api import Route, sync_playwright

    refused: list[str] = []

    def loopback_only(route: Route) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.route("**/*", loopback_only)
            tab.goto(served + page)
            tab.wait_for_selector(rendered, timeout=30_000)
            text = tab.inner_text("body")
        finally:
            browser.close()
    assert refused == []
    assert "/v1/jobs" in text or "Submit Job" in text or "submit_job" in text.lower()
    assert "ocrq" in text
