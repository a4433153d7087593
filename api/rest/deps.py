"""Dependencies for route handlers, as ``Annotated`` aliases (the full-stack template's habit).

Everything comes from ``app.state``, filled by :func:`ocrq.api.rest.app.create_app`;
tests swap settings through ``app.dependency_overrides[get_settings]``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.rest.security import authenticate
from ocrq.api.rest.submission import Submitter
from ocrq.settings import Settings

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="From `ocrq keys add NAME`")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def get_submitter(request: Request) -> Submitter:
    return request.app.state.submitter


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
SubmitterDep = Annotated[Submitter, Depends(get_submitter)]


def require_api_key(sessions: SessionsDep, key: Annotated[str | None, Security(API_KEY_HEADER)]) -> int:
    """The caller's key id; 401 (``unauthorized``) for a missing, unknown or revoked key."""
    return authenticate(sessions, key)


ApiKeyDep = Annotated[int, Depends(require_api_key)]
