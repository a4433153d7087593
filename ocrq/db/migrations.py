"""Apply and inspect Alembic migrations from code (``ocrq db upgrade``, first use of SQLite).

The migrations are package data: the top-level ``alembic/`` folder installs as ``ocrq/alembic`` (see
setup.py), so a wheel installed anywhere can migrate its database without a source checkout or an
``alembic.ini``. The Alembic config is therefore built here in code; ``alembic.ini`` only serves people
who run the ``alembic`` command from the repository root.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from alembic import command
from ocrq.errors import ConfigurationError

CHECKOUT_MIGRATIONS = Path(__file__).resolve().parents[2] / "alembic"
"""The source tree's folder, used by an editable install: setuptools' editable finder cannot map a folder
without ``__init__.py``, and ``alembic/`` must have none (it would shadow the ``alembic`` library for
anything run from the repository root)."""


def script_location() -> Path:
    """The folder holding ``env.py``, ``script.py.mako`` and ``versions/``: packaged, else the checkout's."""
    packaged = files("ocrq") / "alembic"
    if packaged.is_dir():
        return Path(str(packaged))
    if CHECKOUT_MIGRATIONS.is_dir():
        return CHECKOUT_MIGRATIONS
    raise ConfigurationError(f"ocrq's migrations are missing (neither {packaged} nor {CHECKOUT_MIGRATIONS})")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
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
