"""One batch, start to finish, on the embedded default: find files, register, run, write results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ocrq.db.migrations import ensure_schema
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import Settings
from ocrq.worker.documents.ingest import create_job
from ocrq.worker.documents.sources import SourceFile, walk_sources
from ocrq.worker.embedded import EmbeddedRunner, Progress, ProgressCallback, job_progress
from ocrq.worker.engines.chain import EngineChain
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.results.files import write_job_outputs


@dataclass(frozen=True, slots=True)
class BatchRequest:
    inputs: list[Path]
    out_dir: Path
    force: bool = False


def open_database(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    ensure_schema(engine)
    return engine, make_session_factory(engine)


def run_embedded_batch(
    settings: Settings,
    request: BatchRequest,
    on_progress: ProgressCallback = lambda _p: None,
    chain_factory: Callable[[Settings], EngineChain] = build_chain,
) -> dict[str, Any]:
    """Returns the ``batch.json`` summary, also written under ``request.out_dir``."""
    sources = walk_sources(request.inputs, exclude=own_files(settings, request.out_dir))
    return run_embedded_sources(settings, sources, request, on_progress, chain_factory)


def run_embedded_sources(
    settings: Settings,
    sources: list[SourceFile],
    request: BatchRequest,
    on_progress: ProgressCallback = lambda _p: None,
    chain_factory: Callable[[Settings], EngineChain] = build_chain,
    origin: str = "cli",
) -> dict[str, Any]:
    engine, sessions = open_database(settings)
    try:
        job_id = create_job(sessions, sources, settings, origin=origin, reuse=not request.force)
        runner = EmbeddedRunner(sessions, settings, chain_factory=chain_factory)
        try:
            runner.run(job_id, on_progress)
        except KeyboardInterrupt as interrupt:
            raise BatchInterrupted(job_id, job_progress(sessions, job_id)) from interrupt
        return write_job_outputs(sessions, job_id, request.out_dir, settings)
    finally:
        engine.dispose()


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped an embedded batch; its job is closed as ``interrupted`` and can be resumed."""

    def __init__(self, job_id: int, progress: Progress) -> None:
        super().__init__(job_id)
        self.job_id, self.progress = job_id, progress


def own_files(settings: Settings, out_dir: Path) -> list[Path]:
    """The output folder and a SQLite database (with its WAL files) never count as input."""
    own = [out_dir]
    database = make_url(settings.database_url).database
    if make_url(settings.database_url).get_backend_name() == "sqlite" and database:
        own += [Path(database + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    return own
