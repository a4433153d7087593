"""A loopback OpenAI-compatible server that misbehaves on cue, for what a real vLLM won't do on demand.

Each chat request takes the next scripted :class:`Step` (reply with a status and body, stall, or
cut the connection); with the script empty it answers a valid completion. Requests are recorded,
and the peak number in flight is tracked, so tests can check what the client sent and how many
at once. ``/health`` and ``/v1/models`` answer like vLLM.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

Body = dict[str, Any] | str


@dataclass
class Step:
    status: int = 200
    body: Body | Callable[[dict[str, Any]], Body] | None = None
    """JSON (or raw text); a callable gets the request JSON. None: a default completion."""
    delay: float = 0.0
    reset: bool = False
    """Close the connection with a TCP reset instead of answering."""


def completion(
    content: str, finish_reason: str = "stop", prompt_tokens: int = 100, completion_tokens: int = 20
) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage | {"total_tokens": prompt_tokens + completion_tokens},
    }


def nested_error(status: int, message: str, kind: str = "BadRequestError") -> dict[str, Any]:
    """vLLM >= 0.10.1's error shape."""
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def flat_error(status: int, message: str, kind: str = "BadRequestError") -> dict[str, Any]:
    """vLLM < 0.10.1's error shape."""
    return {"object": "error", "message": message, "type": kind, "param": None, "code": status}


def request_image(request: dict[str, Any]) -> Image.Image:
    """The image a chat request carries (decoded from its data URL)."""
    url = request["messages"][0]["content"][0]["image_url"]["url"]
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def request_text(request: dict[str, Any]) -> str:
    return request["messages"][0]["content"][1]["text"]


@dataclass
class FaultServer:
    url: str
    models: dict[str, int] = field(default_factory=lambda: {"test-model": 16384})
    script: deque[Step] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    healthy: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    answer_delay: float = 0.0
    """Seconds each unscripted request takes (a benchmark's stand-in for model time)."""
    down_until: float = 0.0
    """While ``time.monotonic()`` is below it, every connection is reset: the server is down."""
    refused: int = 0
    armed_outage: float = 0.0
    crashes_on: Callable[[dict[str, Any]], bool] | None = None
    """A poison page: requests it picks get a TCP reset (the server dies on them), the rest are served."""

    def queue(self, *steps: Step) -> None:
        self.script.extend(steps)

    def outage(self, seconds: float) -> None:
        """Go down now for ``seconds`` (every request reset, like a dead server), then come back."""
        self.down_until = time.monotonic() + seconds

    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def outage_at_first_request(self, seconds: float) -> None:
        """Go down for ``seconds`` when the next chat request arrives: the outage surely hits pages,
        however slowly the test machine gets there."""
        self.armed_outage = seconds

    def trip_armed_outage(self) -> None:
        with self.lock:
            if self.armed_outage:
                self.outage(self.armed_outage)
                self.armed_outage = 0.0

    def next_step(self, request: dict[str, Any]) -> Step:
        with self.lock:
            self.requests.append(request)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return self.script.popleft() if self.script else Step(delay=self.answer_delay)

    def done(self) -> None:
        with self.lock:
            self.in_flight -= 1


def _handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            if server.is_down():
                self._reset()
            elif self.path == "/health":
                self._send(200 if server.healthy else 503, "")
            elif self.path == "/v1/models":
                data = [
                    {"id": name, "object": "model", "max_model_len": n} for name, n in server.models.items()
                ]
                self._send(200, {"object": "list", "data": data})
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.trip_armed_outage()
            if server.is_down() or (server.crashes_on is not None and server.crashes_on(request)):
                with server.lock:
                    server.refused += 1
                self._reset()
                return
            server.headers.append(dict(self.headers))
            step = server.next_step(request)
            try:
                self._play(step, request)
            finally:
                server.done()

        def _play(self, step: Step, request: dict[str, Any]) -> None:
            time.sleep(step.delay)
            if step.reset:
                self._reset()
                return
            body = step.body(request) if callable(step.body) else step.body
            self._send(step.status, completion("Hello") if body is None else body)

        def _reset(self) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def _send(self, status: int, body: Body) -> None:
            payload = (json.dumps(body) if isinstance(body, dict) else body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to tell it

    return Handler


@contextmanager
def running_fault_server() -> Iterator[FaultServer]:
    """Serve on a free loopback port until the block ends."""
    state = FaultServer(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
