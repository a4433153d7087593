"""A loopback stand-in for the Docker Engine API (no Docker engine runs here).

It answers the handful of endpoints ``ocrq vllm`` uses, keeps one container's
state, and records the create request so tests can check what Docker was asked.
"""

from __future__ import annotations

import json
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_VERSION = "1.43"


@dataclass
class FakeDocker:
    url: str = ""
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    log_text: bytes = b"INFO: Application startup complete.\n"

    def inspect(self, ref: str) -> dict[str, Any] | None:
        for name, body in self.containers.items():
            if ref in (name, body["Id"]):
                return body
        return None


def _route(state: FakeDocker, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    state.calls.append(f"{method} {path}")
    path = re.sub(rf"^/v{API_VERSION}", "", path.split("?")[0])
    if method == "GET" and path == "/_ping":
        return 200, "OK"
    if method == "POST" and path == "/containers/create":
        return _create(state, body)
    match = re.fullmatch(r"/containers/([^/]+)(/\w+)?", path)
    container = state.inspect(match.group(1)) if match else None
    if container is None:
        return 404, {"message": "No such container"}
    return _act(state, method, match.group(2) or "", container)


def _create(state: FakeDocker, body: dict[str, Any]) -> tuple[int, Any]:
    name = body.pop("__name")
    state.created.append(body)
    state.containers[name] = {
        "Id": f"c{len(state.created)}",
        "Name": f"/{name}",
        "Config": body,
        "State": {"Status": "created"},
    }
    return 201, {"Id": state.containers[name]["Id"], "Warnings": []}


def _act(state: FakeDocker, method: str, action: str, container: dict[str, Any]) -> tuple[int, Any]:
    if action == "/json":
        return 200, container
    if action == "/start":
        container["State"]["Status"] = "running"
    elif action == "/stop":
        container["State"]["Status"] = "exited"
    elif action == "/logs":
        return 200, struct.pack(">BxxxL", 1, len(state.log_text)) + state.log_text
    elif method == "DELETE":
        state.containers.pop(container["Name"].lstrip("/"))
    return 204, None


def _handler(state: FakeDocker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            name = re.search(r"[?&]name=([^&]+)", self.path)
            body = body | ({"__name": name.group(1)} if name else {})
            status, payload = _route(state, method, self.path, body)
            self._send(status, payload)

        def _send(self, status: int, payload: Any) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() if payload else b""
            self.send_response(status)
            kind = "application/vnd.docker.raw-stream" if isinstance(payload, bytes) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def running_fake_docker() -> Iterator[FakeDocker]:
    state = FakeDocker()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"tcp://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
