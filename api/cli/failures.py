"""Common failures as one line naming the problem and the fix, instead of a traceback.

Each maps a third-party exception (the database, the broker) to a message and an exit code. The
traceback is still there for those who ask: ``-v`` or ``OCRQ_LOG_LEVEL=debug``. Anything not listed
here is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocrq.redaction import mask_text, mask_url

EXIT_SYSTEM, EXIT_USAGE = 1, 2


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    message: str
    exit_code: int = EXIT_SYSTEM


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error)
    lines = [line.strip() for line in text.splitlines() if line.strip() and "sqlalche.me" not in line]
    return " ".join(lines[:2])


def database_failure(error: BaseException, database_url: str | None) -> Failure | None:
    from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

    where = mask_url(database_url) if database_url else "the database"
    if isinstance(error, NoSuchModuleError | ArgumentError):
        return Failure(
            "configuration",
            f"OCRQ_DATABASE_URL={where} is not a database URL ocrq can use ({_first_line(error)}); "
            "e.g. sqlite:///ocrq.db or postgresql+psycopg://ocrq@db-host:5432/ocrq",
            EXIT_USAGE,
        )
    if isinstance(error, OperationalError | InterfaceError):
        return Failure(
            "database_unreachable",
            f"cannot use the database {where}: {_first_line(error)}; "
            "check OCRQ_DATABASE_URL and that the server is up (`ocrq doctor`)",
        )
    return None


def broker_failure(error: BaseException, broker_url: str | None) -> Failure | None:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(error, RedisConnectionError | RedisTimeoutError | KombuOperationalError):
        return Failure(
            "broker_unavailable",
            f"cannot reach the broker {mask_url(broker_url)}: {_first_line(error)}; "
            "check OCRQ_BROKER_URL and that Redis is up (`ocrq doctor`)",
        )
    return None


def known_failure(error: BaseException, database_url: str | None, broker_url: str | None) -> Failure | None:
    """The one-line form of ``error``, or None for a failure nobody expected (a bug)."""
    found = database_failure(error, database_url) or broker_failure(error, broker_url)
    return Failure(found.code, mask_text(found.message), found.exit_code) if found else None
