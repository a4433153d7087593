"""Signing in to the page: the API key is typed once and traded for a signed session cookie.

The cookie carries no key, only ``key_id.expiry.signature``. The signature is an HMAC under the
server's session secret over the id, the expiry and the key's stored hash, so a revoked key ends
its sessions at once (its row no longer matches) and a forged cookie needs the secret. The cookie
is HttpOnly (scripts cannot read it) and SameSite=Strict (other sites cannot send it).

Every form carries a CSRF token derived from the session cookie (HMAC again, nothing stored):
SameSite already keeps cross-site posts out, the token and an Origin check make sure of it. The
sign-in form, which has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import ApiKey
from ocrq.errors import CsrfRejected, NotSignedIn
from ocrq.jobs.access import Caller, Role
from ocrq.settings import Settings

SESSION_COOKIE = "ocrq_session"
LOGIN_COOKIE = "ocrq_login"
CSRF_FIELD = "csrf"


@dataclass(frozen=True, slots=True)
class WebSession:
    caller: Caller
    name: str
    """The key's name, shown in the header so the user knows which key is signed in."""
    csrf: str


class SessionSigner:
    def __init__(self, settings: Settings) -> None:
        given = settings.web_session_secret
        self.secret = given.get_secret_value().encode() if given else secrets.token_bytes(32)
        self.lifetime_s = settings.web_session_hours * 3600
        self.secure = settings.api_behind_tls

    def cookie_for(self, key_id: int, key_hash: str) -> str:
        expires = int(time.time() + self.lifetime_s)
        return f"{key_id}.{expires}.{self._sign(f'{key_id}.{expires}.{key_hash}')}"

    def csrf_for(self, cookie: str) -> str:
        return self._sign(f"csrf.{cookie}")

    def verify(self, cookie: str, key_hash: str) -> bool:
        key_id, expires, signature = cookie.split(".")
        if int(expires) < time.time():
            return False
        return hmac.compare_digest(signature, self._sign(f"{key_id}.{expires}.{key_hash}"))

    def _sign(self, message: str) -> str:
        digest = hmac.new(self.secret, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, httponly=True, samesite="strict", secure=self.secure, path="/"
        )


def signer(request: Request) -> SessionSigner:
    return request.app.state.web_signer


def current_session(request: Request) -> WebSession:
    """The signed-in caller; :class:`NotSignedIn` when there is none."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    parts = cookie.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise NotSignedIn("sign in with your API key")
    row = _active_key(request.app.state.sessions, int(parts[0]))
    if row is None or not signer(request).verify(cookie, row.key_hash):
        raise NotSignedIn("your session ended; sign in again")
    return WebSession(Caller(row.id, Role(row.role)), row.name, signer(request).csrf_for(cookie))


def _active_key(sessions: sessionmaker[Session], key_id: int) -> ApiKey | None:
    with sessions() as session:
        return session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))


def key_row(sessions: sessionmaker[Session], caller: Caller) -> ApiKey:
    row = _active_key(sessions, caller.key_id or 0)
    if row is None:
        raise NotSignedIn("the API key is unknown or revoked")
    return row


def check_same_origin(request: Request) -> None:
    """Refuse a post another site's page made: browsers say where a request comes from."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfRejected("this form was sent from another site")
    origin = request.headers.get("origin")  # "null" under Referrer-Policy: no-referrer (the token decides)
    if origin not in (None, "null") and urlsplit(origin).netloc != request.headers.get(
        "host", request.url.netloc
    ):
        raise CsrfRejected("this form was sent from another site")


def check_csrf(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected, given):
        raise CsrfRejected("the form's security token is missing or stale; reload the page and try again")


def new_login_token() -> str:
    return secrets.token_urlsafe(24)
