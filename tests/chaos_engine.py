"""A loopback vLLM stand-in for the chaos runs: fixed capacity, stoppable on its port, with a poison page.

It answers ``/v1/models`` and chat completions like vLLM serving dots.ocr (a JSON
list of layout cells). ``stop()`` closes the port (clients get "connection
refused", as when the server dies) and ``start()`` serves again on the same
port. A page whose image is more than three times wider than tall is the
poison page: the "engine" crashes on it every time (the connection is reset).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import socket
import struct
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

SERVED_NAME = "chaos-model"
ANSWER = json.dumps([{"bbox": [10, 10, 300, 60], "category": "Text", "text": "chaos engine page"}])
POISON_ASPECT = 3.0


@dataclass
class ChaosEngine:
    port: int
    slots: int = 2
    seconds: float = 0.5
    served: int = 0
    poisoned: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: set[socket.socket] = field(default_factory=set)
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self.gate = threading.Semaphore(self.slots)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ChaosEngine:
        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        server.request_queue_size = 256
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        """Down as a dead server is: the port refuses, and kept-alive connections are cut too."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self.lock:
            connections, self.connections = self.connections, set()
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def answer(self, request: dict) -> bool:
        """Serve one page in a slot; False for the poison page (the caller resets the connection)."""
        if is_poison(request):
            with self.lock:
                self.poisoned += 1
            return False
        with self.gate:
            time.sleep(self.seconds)
        with self.lock:
            self.served += 1
        return True


def is_poison(request: dict) -> bool:
    try:
        url = request["messages"][0]["content"][0]["image_url"]["url"]
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))  # header only
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error, OSError):
        return False
    width, height = image.size
    return width > POISON_ASPECT * height


def _completion() -> bytes:
    message = {"role": "assistant", "content": ANSWER}
    return json.dumps(
        {
            "id": "chaos",
            "object": "chat.completion",
            "model": SERVED_NAME,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 500, "completion_tokens": 20, "total_tokens": 520},
        }
    ).encode()


def _handler(engine: ChaosEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with engine.lock:
                engine.connections.add(self.connection)

        def handle(self) -> None:
            with suppress(OSError):  # a client cut by stop() or by the poison reset
                super().handle()

        def finish(self) -> None:
            with engine.lock:
                engine.connections.discard(self.connection)
            with suppress(OSError):
                super().finish()

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                card = {"id": SERVED_NAME, "object": "model", "max_model_len": 16384}
                self._send(json.dumps({"object": "list", "data": [card]}).encode())
            else:
                self._send(b"")

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if engine.answer(request):
                self._send(_completion())
                return
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def _send(self, body: bytes) -> None:
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # cut by stop(), or the client gave up
                self.close_connection = True

    return Handler
