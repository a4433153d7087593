"""Apply and inspect Alembic migrations from code (``ocrq db upgrade``, first use of SQLite)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from alembic import command
from ocrq.errors import ConfigurationError

REPO_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    ini = REPO_ROOT / "alembic.ini"
    if not ini.exists():
        raise ConfigurationError(f"migrations not found at {ini}; install ocrq from its source tree")
    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    url = engine.url.render_as_string(hide_password=False)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def ensure_schema(engine: Engine) -> None:
    """Bring a SQLite file up to date on first use; other servers must be migrated on purpose."""
    if is_current(engine):
        return
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name != "sqlite":
        raise ConfigurationError(
            f"database {engine.url!r} is not at the newest schema; run `ocrq db upgrade` first"
        )
    upgrade(url)
