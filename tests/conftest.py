"""Shared fixtures: settings pointed at temporary places, and real databases (SQLite, Postgres)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.migrations import upgrade
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import Settings, build_settings
from tests.hf_support import tiny_model  # noqa: F401  (the tiny Qwen2-VL, built once per session)
from tests.vllm_server import vllm_server  # noqa: F401  (one session-wide real vLLM for every module)

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "corpus"
POSTGRES_ADMIN_URL = os.environ.get(
    "OCRQ_TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on a fresh SQLite file in tmp_path with Tesseract only; keyword overrides win."""

    def build(**overrides: object) -> Settings:
        defaults: dict[str, object] = {
            "database_url": f"sqlite:///{tmp_path / 'ocrq.db'}",
            "engines": ["tesseract"],
            "output_dir": tmp_path / "results",
        }
        return build_settings(**(defaults | overrides))

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def _create_postgres_database() -> str:
    name = f"ocrq_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # no server here: tell why instead of a bare connection error
        pytest.fail(f"Postgres at {POSTGRES_ADMIN_URL} is needed for this test: {error}")
    finally:
        admin.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty Postgres database for one test, dropped afterwards."""
    url = _create_postgres_database()
    yield url
    _drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on the embedded default and on Postgres."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ocrq.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Migrated database, real connection."""
    upgrade(database_url)
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


REDIS_TEST_URL = os.environ.get("OCRQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A dedicated Redis database number, emptied before and after each test."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {REDIS_TEST_URL} is needed for this test: {error}")
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()
