"""An OpenAI-compatible stand-in for a vLLM server of fixed capacity: N slots x S seconds per request.

Requests beyond N wait for a slot (like vLLM's max_num_seqs), so the server's
throughput can never exceed N/S; it records how busy its slots were, which is
what the feed benchmark divides by.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = json.dumps([{"bbox": [10, 10, 300, 60], "category": "Text", "text": "capacity server page"}])


@dataclass
class Capacity:
    slots: int
    seconds: float
    served_name: str
    url: str = ""
    busy_seconds: float = 0.0
    requests: int = 0
    first_start: float | None = None
    last_end: float = 0.0
    waiting: int = 0
    """Requests queued for a slot, reported like vLLM's ``vllm:num_requests_waiting``."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate = threading.Semaphore(self.slots)

    def serve_one(self) -> None:
        with self.lock:
            self.waiting += 1
        with self.gate:
            with self.lock:
                self.waiting -= 1
            started = time.monotonic()
            time.sleep(self.seconds)
            ended = time.monotonic()
        with self.lock:
            self.requests += 1
            self.busy_seconds += ended - started
            self.first_start = started if self.first_start is None else min(self.first_start, started)
            self.last_end = max(self.last_end, ended)

    def utilisation(self) -> float:
        """Busy slot-seconds over available slot-seconds between the first request and the last answer."""
        window = self.last_end - (self.first_start or self.last_end)
        return self.busy_seconds / (self.slots * window) if window else 0.0


def _completion() -> bytes:
    return json.dumps(
        {
            "id": "cmpl",
            "object": "chat.completion",
            "model": "bench",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 40, "total_tokens": 1040},
        }
    ).encode()


def _handler(capacity: Capacity) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/metrics":
                with capacity.lock:
                    waiting = capacity.waiting
                self._send(f'vllm:num_requests_waiting{{model_name="bench"}} {waiting}.0\n'.encode())
            elif self.path == "/stats":
                with capacity.lock:
                    stats = {"requests": capacity.requests, "utilisation": capacity.utilisation()}
                self._send(json.dumps(stats).encode())
            elif self.path == "/v1/models":
                card = {"id": capacity.served_name, "object": "model", "max_model_len": 16384}
                self._send(json.dumps({"object": "list", "data": [card]}).encode())
            else:
                self._send(b"")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            capacity.serve_one()
            self._send(_completion())

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def capacity_server(
    slots: int, seconds: float, served_name: str, host: str = "127.0.0.1", port: int = 0
) -> Iterator[Capacity]:
    capacity = Capacity(slots, seconds, served_name)
    server = ThreadingHTTPServer((host, port), _handler(capacity))
    server.daemon_threads = True
    server.request_queue_size = 256
    capacity.url = f"http://127.0.0.1:{server.server_address[1]}"  # host "0.0.0.0" listens there too
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield capacity
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="A vLLM stand-in of fixed capacity, until SIGTERM.")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--served-name", default="rednote-hilab/dots.ocr")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with capacity_server(args.slots, args.seconds, args.served_name, args.host, args.port):
        stop.wait()


if __name__ == "__main__":
    main()
