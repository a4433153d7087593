"""Who is asking: the caller every read of jobs, documents and pages must name.

Ownership is a ``WHERE`` clause, not a check a route may forget: the read
model's functions take a :class:`Caller` as a required argument and build
their queries through :func:`visible_jobs`, so a job another key made is
simply not found (404, never 403, so ids do not leak).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, true

from ocrq.db.models import Job


class Role(StrEnum):
    ADMIN = "admin"
    """Operators: every job, including those made by the CLI and the nightly inbox."""
    SUBMIT = "submit"
    """Tenants: only the jobs their own key made."""


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: int | None
    role: Role

    def __post_init__(self) -> None:
        if self.role is Role.SUBMIT and self.key_id is None:
            raise ValueError("a submit caller needs its key id (None would match the keyless CLI jobs)")

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


OPERATOR = Caller(None, Role.ADMIN)
"""The server itself (the webhook sender, the CLI): sees every job."""


def visible_jobs(caller: Caller) -> ColumnElement[bool]:
    """The condition on :class:`~ocrq.db.models.Job` rows this caller may see."""
    if caller.is_admin:
        return true()
    return Job.api_key_id == caller.key_id
