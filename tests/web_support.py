"""A real uvicorn server for browser tests, and the headless Chromium that Debian installs.

The app runs in a thread of the test process (its lifespan starts the embedded runner), on a
loopback port of its own. Playwright drives the system's ``/usr/bin/chromium``; it never
downloads a browser (``playwright install`` is not run anywhere).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from ocrq.api.rest.app import create_app
from ocrq.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
PORTS = range(29000, 30000)
"""This branch's ports (ocrq helpers share the machine)."""


def spare_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no spare port in 29000-29999")


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The ocrq app on a real uvicorn server; yields its base URL."""
    port = spare_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def chromium(playwright_api: Any) -> Iterator[Any]:
    """Debian's Chromium under Playwright (a module's ``browser`` fixture; never a downloaded build)."""
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, width: int = 1280, height: int = 900, **options: Any) -> Any:
    context = browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True, **options
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def sign_in(page: Any, web: dict[str, Any], who: str) -> None:
    page.goto(web["url"] + "/")
    assert "/login" in page.url, "an anonymous visitor must be sent to sign in"
    page.get_by_label("API key").fill(web["keys"][who])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(web["url"] + "/")


def api(web: dict[str, Any], who: str, path: str) -> Any:
    response = httpx.get(web["url"] + path, headers={"X-API-Key": web["keys"][who]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()
