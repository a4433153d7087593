"""API keys: made at random, shown once, stored only as their SHA-256.

A key carries 256 bits of randomness, so a plain SHA-256 (not a slow password
hash) is enough: nobody can brute-force the preimage, and lookups stay one
indexed equality per request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.models import ApiKey, utcnow
from ocrq.db.session import rows_changed
from ocrq.errors import RequestError, Unauthorized
from ocrq.jobs.access import Caller, Role

KEY_PREFIX = "ocrq_"
SHOWN_PREFIX_CHARS = 12
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per key, not on every request."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    name: str
    prefix: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def add_key(sessions: sessionmaker[Session], name: str, role: Role = Role.SUBMIT) -> str:
    """Store a new key under ``name``; returns the key itself, which is never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:SHOWN_PREFIX_CHARS], key_hash=hash_key(key), role=Role(role).value)
    try:
        with sessions.begin() as session:
            session.add(row)
    except IntegrityError as error:
        raise RequestError(f"a key named {name!r} exists already") from error
    return key


def list_keys(sessions: sessionmaker[Session]) -> list[KeyInfo]:
    with sessions() as session:
        rows = session.scalars(select(ApiKey).order_by(ApiKey.id))
        return [
            KeyInfo(k.name, k.prefix, Role(k.role), k.created_at, k.last_used_at, k.revoked_at) for k in rows
        ]


def revoke_key(sessions: sessionmaker[Session], name: str) -> bool:
    """False when no active key has that name."""
    with sessions.begin() as session:
        return bool(
            rows_changed(
                session,
                update(ApiKey)
                .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow()),
            )
        )


def authenticate(sessions: sessionmaker[Session], key: str | None) -> Caller:
    """Who the active key belongs to; :class:`Unauthorized` for a missing, unknown or revoked one."""
    if not key:
        raise Unauthorized(
            "send an API key as `Authorization: Bearer KEY` or `X-API-Key: KEY`"
            " (`ocrq keys add NAME` makes one)"
        )
    with sessions() as session:
        row = session.execute(
            select(ApiKey.id, ApiKey.role, ApiKey.last_used_at).where(
                ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)
            )
        ).first()
    if row is None:
        raise Unauthorized("the API key is unknown or revoked")
    _touch(sessions, row.id, row.last_used_at)
    return Caller(row.id, Role(row.role))


def _touch(sessions: sessionmaker[Session], key_id: int, last_used: datetime | None) -> None:
    now = utcnow()
    if last_used is not None and _aware(last_used) > now - LAST_USED_RESOLUTION:
        return
    with sessions.begin() as session:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns; they were stored as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)
