"""Alembic environment: the URL comes from the caller's config or from ocrq settings."""

from __future__ import annotations

from alembic import context
from ocrq.db.models import Base
from ocrq.db.session import make_engine
from ocrq.settings import build_settings

config = context.config


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or build_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_database_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
