"""The Alembic history and the SQLAlchemy models describe the same schema, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from ocrq.db.migrations import ensure_schema, is_current, upgrade
from ocrq.db.models import Base
from ocrq.db.session import make_engine
from ocrq.errors import ConfigurationError


def test_migrations_match_models(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_ensure_schema_creates_a_new_sqlite_file(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    assert not is_current(engine)
    ensure_schema(engine)
    assert is_current(engine)
    assert {"jobs", "documents", "pages", "attempts"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    engine.dispose()


def test_postgres_is_not_migrated_behind_the_operators_back(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with pytest.raises(ConfigurationError, match="ocrq db upgrade"):
        ensure_schema(engine)
    engine.dispose()
