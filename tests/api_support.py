"""Helpers for the REST API tests: an app on real databases, a key, uploads, a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from ocrq.api.rest.app import create_app
from ocrq.api.rest.security import add_key
from ocrq.api.rest.webhook_policy import Resolver
from ocrq.jobs.access import Role
from ocrq.settings import Settings
from ocrq.worker.batch import open_database


@dataclass
class Api:
    client: TestClient
    key: str
    settings: Settings

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def upload(self, *paths: Path, options: dict[str, Any] | None = None) -> Any:
        files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
        data = {"options": json.dumps(options)} if options else None
        return self.client.post("/v1/jobs", files=files, data=data, headers=self.headers)

    def wait(self, job_id: int, seconds: float = 60) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}", params={"wait": seconds}, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, url: str, **params: Any) -> Any:
        return self.client.get(url, params=params, headers=self.headers)


def make_key(settings: Settings, name: str | None = None, role: Role = Role.SUBMIT) -> str:
    engine, sessions = open_database(settings)
    try:
        return add_key(sessions, name or f"tests-{uuid.uuid4().hex[:8]}", role)
    finally:
        engine.dispose()


@contextmanager
def running_api(settings: Settings, resolver: Resolver | None = None) -> Iterator[Api]:
    """The app from its factory, lifespan running (background runner, webhook sender).

    ``resolver`` stands in for DNS when webhook hosts are named (see :mod:`ocrq.api.rest.webhook_policy`).
    """
    key = make_key(settings)
    with TestClient(create_app(settings, resolver)) as client:
        yield Api(client, key, settings)


def as_key(api: Api, key: str) -> Api:
    """The same running app, called with another key."""
    return Api(api.client, key, api.settings)


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A loopback HTTP server answering with the next status in ``statuses`` (then 200).

    ``redirect_to`` makes every answer a 302 to that URL instead.
    """

    statuses: list[int]
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    port: int = 0
    redirect_to: str | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(Received(time.monotonic(), dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(302 if receiver.redirect_to else status)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self.do_POST()

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler


@contextmanager
def webhook_receiver(statuses: list[int], redirect_to: str | None = None) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(statuses, redirect_to=redirect_to)
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    receiver.port = server.server_address[1]
    receiver.url = f"http://127.0.0.1:{receiver.port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
