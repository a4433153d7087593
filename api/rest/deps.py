"""Dependencies for route handlers, as ``Annotated`` aliases (the full-stack template's habit).

Everything comes from ``app.state``, filled by :func:`ocrq.api.rest.app.create_app`;
tests swap settings through ``app.dependency_overrides[get_settings]``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.admission import KeyQuota
from ocrq.api.rest.security import authenticate
from ocrq.api.rest.submission import Submitter
from ocrq.api.rest.webhook_policy import WebhookPolicy
from ocrq.errors import Unauthorized
from ocrq.jobs.access import Caller
from ocrq.settings import Settings

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="From `ocrq keys add NAME`")
BEARER = HTTPBearer(
    auto_error=False, description="The same key as `Authorization: Bearer KEY` (OpenAI style)"
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def get_submitter(request: Request) -> Submitter:
    return request.app.state.submitter


def get_quota(request: Request) -> KeyQuota:
    return request.app.state.quota


def get_webhook_policy(request: Request) -> WebhookPolicy:
    return request.app.state.webhook_policy


SettingsDep = Annotated[Settings, Depends(get_settings)]
QuotaDep = Annotated[KeyQuota, Depends(get_quota)]
WebhookPolicyDep = Annotated[WebhookPolicy, Depends(get_webhook_policy)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
SubmitterDep = Annotated[Submitter, Depends(get_submitter)]


def require_api_key(
    request: Request,
    sessions: SessionsDep,
    _key: Annotated[str | None, Security(API_KEY_HEADER)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Caller:
    """Who is calling; 401 (``unauthorized``) for a missing, unknown or revoked key.

    The two security dependencies document both ways in OpenAPI; the raw headers
    decide, because they also show an empty header. A key sent both ways must be
    the same key: a request carrying one good and one bad credential is refused.
    """
    return authenticate(sessions, _credential(request))


def _credential(request: Request) -> str | None:
    given = []
    if (header := request.headers.get("x-api-key")) is not None:
        given.append(header.strip())
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given.append(token.strip())
    if len(set(given)) > 1 or "" in given:
        raise Unauthorized("send one API key, once: in `Authorization: Bearer KEY` or in `X-API-Key`")
    return given[0] if given else None


CallerDep = Annotated[Caller, Depends(require_api_key)]
