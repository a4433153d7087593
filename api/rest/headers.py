"""Security headers on every response; a strict Content-Security-Policy on every HTML page.

A pure ASGI middleware, so streamed results pass through untouched. HTML
pages are small and are buffered: their CSP allows exactly the inline
scripts they carry (by hash) and the external files they name (by URL),
nothing else. HSTS is sent only when the operator says TLS is in front
(``OCRQ_API_BEHIND_TLS``): on plain HTTP it would be a lie browsers remember.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
}
NOT_HTML_CSP = b"default-src 'none'; frame-ancestors 'none'"
HSTS = b"max-age=63072000; includeSubDomains"
DOCS_STYLE = " 'unsafe-inline'"
"""Swagger UI and ReDoc style elements at run time; only the docs pages get this."""

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"'](https?://[^\"']+)[\"']", re.IGNORECASE)
_EXTERNAL_STYLE = re.compile(r"<link[^>]*\bhref=[\"'](https?://[^\"']+\.css[^\"']*)[\"']", re.IGNORECASE)


def content_security_policy(html: str, docs: bool = False) -> str:
    """The page's own policy: 'self', its inline scripts' hashes, the external files it loads."""
    hashes = [f"'sha256-{_digest(script)}'" for script in _INLINE_SCRIPT.findall(html)]
    scripts = " ".join(["'self'", *hashes, *_EXTERNAL_SCRIPT.findall(html)])
    styles = " ".join(["'self'", *_EXTERNAL_STYLE.findall(html)]) + (DOCS_STYLE if docs else "")
    parts = [
        "default-src 'none'",
        f"script-src {scripts}",
        f"style-src {styles}",
        "img-src 'self' data:",  # the docs' assets are served here too (api/rest/docs.py): no CDN
        "font-src 'self'",
        "connect-src 'self'",
        "worker-src 'self'" + (" blob:" if docs else ""),
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
    return "; ".join(parts)


def _digest(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, behind_tls: bool, docs_paths: Iterable[str] = ()) -> None:
        self.app, self.behind_tls = app, behind_tls
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = _Response(send, self._fixed(scope["path"]), docs=scope["path"] in self.docs_paths)
        await self.app(scope, receive, response.send)

    def _fixed(self, path: str) -> dict[bytes, bytes]:
        headers = dict(ALWAYS)
        if path.startswith("/v1/"):
            headers[b"cache-control"] = b"no-store"  # OCR text and results are the tenants' data
        if self.behind_tls:
            headers[b"strict-transport-security"] = HSTS
        return headers


class _Response:
    """Adds the headers to the response start; holds back an HTML page until its body is known."""

    def __init__(self, send: Send, fixed: dict[bytes, bytes], docs: bool) -> None:
        self._send, self._fixed, self._docs = send, fixed, docs
        self._start: Message | None = None
        self._body = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self._fixed]
            message = {**message, "headers": headers + list(self._fixed.items())}
            if not _is_html(headers):
                message["headers"].append((b"content-security-policy", NOT_HTML_CSP))
                await self._send(message)
                return
            self._start = message
            return
        if self._start is None or message["type"] != "http.response.body":
            await self._send(message)
            return
        self._body.extend(message.get("body", b""))
        if not message.get("more_body", False):
            await self._send_html()

    async def _send_html(self) -> None:
        assert self._start is not None
        policy = content_security_policy(self._body.decode("utf-8", "replace"), self._docs)
        self._start["headers"].append((b"content-security-policy", policy.encode()))
        await self._send(self._start)
        await self._send({"type": "http.response.body", "body": bytes(self._body), "more_body": False})


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and v.lower().startswith(b"text/html") for k, v in headers)
