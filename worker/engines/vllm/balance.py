"""Several vLLM servers for one model, spoken to as one client: least outstanding requests, a breaker each.

One GPU per vLLM server and several GPUs per host is the seeds' ``--profile proxy`` without a proxy
process: the worker picks the server with the fewest requests of its own outstanding (each server
keeps its own in-flight cap and AIMD watcher), skips a server whose circuit is open, and sends a page
that met a server fault to the next server before the chain falls back to another engine. A page's
own fault (an unreadable image, a page over the context) is not the server's, and is not retried.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import httpx

from ocrq.errors import EngineUnavailable, OcrqError
from ocrq.settings import Settings
from ocrq.worker.engines.breaker import CircuitBreaker
from ocrq.worker.engines.vllm.client import ClientConfig, Completion, VllmClient


class BalancedClient:
    """The :class:`VllmClient` surface the engine uses, over several servers of one model."""

    def __init__(self, clients: list[VllmClient], breakers: list[CircuitBreaker] | None = None) -> None:
        if not clients:
            raise ValueError("a balanced client needs at least one server")
        self.clients = clients
        self.breakers = breakers or [CircuitBreaker() for _ in clients]
        self.outstanding = [0] * len(clients)
        self._lock = threading.Lock()
        total = sum(client.config.max_in_flight for client in clients)
        self.config: ClientConfig = replace(clients[0].config, max_in_flight=total)

    def chat(self, payload: dict[str, Any]) -> Completion:
        """On the least busy server that may take it; a server fault moves the page to the next one."""
        tried: set[int] = set()
        last: OcrqError | None = None
        while (index := self._pick(tried)) is not None:
            tried.add(index)
            try:
                completion = self.clients[index].chat(payload)
            except OcrqError as error:
                if not error.retryable and not isinstance(error, EngineUnavailable):
                    self.breakers[index].release()  # the page's fault, not the server's
                    raise
                self.breakers[index].record_failure()
                last = error
                continue
            finally:
                self._done(index)
            self.breakers[index].record_success()
            return completion
        raise last or EngineUnavailable(
            "every vLLM server of this model is failing (their circuits are open)"
        )

    def health(self) -> bool:
        return any(client.health() for client in self.clients)

    def servers(self) -> list[VllmClient]:
        return list(self.clients)

    def served_models(self) -> dict[str, int | None]:
        """What every server that can say serves: a model missing on one server fails there, so it
        counts as not served (a server that cannot say is not held against the model)."""
        listed = [served for client in self.clients if (served := client.served_models())]
        if not listed:
            return {}
        common = set(listed[0]).intersection(*listed[1:])
        return {name: _smallest(served.get(name) for served in listed) for name in sorted(common)}

    def waiting(self) -> float | None:
        queued = [value for client in self.clients if (value := client.waiting()) is not None]
        return sum(queued) if queued else None

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def _pick(self, tried: set[int]) -> int | None:
        """The server with the fewest outstanding requests whose circuit lets a page through."""
        with self._lock:
            order = sorted(
                (n for n in range(len(self.clients)) if n not in tried), key=self.outstanding.__getitem__
            )
            for index in order:
                if self.breakers[index].allow():
                    self.outstanding[index] += 1
                    return index
        return None

    def _done(self, index: int) -> None:
        with self._lock:
            self.outstanding[index] -= 1


def _smallest(lengths: Iterable[int | None]) -> int | None:
    known = [length for length in lengths if length]
    return min(known) if known else None


def server_urls(value: str | None) -> list[str]:
    """``OCRQ_VLLM_URL`` / an ``OCRQ_VLLM_MODEL_URLS`` entry: one URL or several, comma-separated."""
    return [url.strip() for url in (value or "").split(",") if url.strip()]


def client_for(
    settings: Settings, transport: httpx.BaseTransport | None = None
) -> VllmClient | BalancedClient:
    """One client for one server; a balanced one over several (each with the host's breaker settings)."""
    urls = server_urls(settings.vllm_model_urls.get(settings.vllm_model) or settings.vllm_url)
    if len(urls) <= 1:
        return VllmClient(ClientConfig.from_settings(settings), transport)
    clients = [VllmClient(ClientConfig.from_settings(settings, url=url), transport) for url in urls]
    breakers = [CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds) for _ in urls]
    return BalancedClient(clients, breakers)
