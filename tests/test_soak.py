"""A bounded soak under every fault at once: real workers and beat, own Redis, Postgres behind a proxy.

About 300 pages in three jobs of small documents, plus a job holding a poison
page, run while a seeded timeline SIGKILLs workers, restarts Redis empty,
cuts the database for 5 s and stops the engine for 20 s. The run happens once
(module fixture); each test below asserts one promise about its outcome.
Set ``OCRQ_SOAK_SEED`` to replay a run; the seed is printed either way.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from tests.chaos import Chaos, ChaosPlan
from tests.chaos_report import ChaosReport, read_report
from tests.conftest import _create_postgres_database, _drop_postgres_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosReport]:
    seed = int(os.environ.get("OCRQ_SOAK_SEED") or random.randrange(1_000_000))
    print(f"\nsoak seed {seed} (replay with OCRQ_SOAK_SEED={seed})")
    url = _create_postgres_database()
    try:
        run = Chaos(ChaosPlan(seed=seed), tmp_path_factory.mktemp("soak"), url).run()
        report = read_report(run)
        print("\n".join([f"soak seed {seed}", *report.lines()]))
        yield report
    finally:
        _drop_postgres_database(url)


def test_every_job_ends(soak: ChaosReport) -> None:
    assert soak.jobs_closed == soak.jobs == 4, soak.lines()
    assert soak.seconds < 180
    assert soak.stopped_late == [], "a worker outlived 30 s after SIGTERM (docker stop would SIGKILL it)"


def test_every_page_is_done_exactly_once_or_failed_with_a_code(soak: ChaosReport) -> None:
    assert soak.missing_rows == 0
    assert not soak.lost, [(p.document, p.status) for p in soak.lost]
    assert not soak.counter_mismatches, soak.counter_mismatches
    failed = [page for page in soak.pages if page.status == "failed"]
    assert all(page.error_code for page in failed), [(p.document, p.error_code) for p in failed]


def test_the_attempts_table_tells_the_story(soak: ChaosReport) -> None:
    for page in soak.pages:
        if page.status == "done":  # the engine that stored it has an ok attempt on record
            assert (page.engine, "ok") in [(engine, outcome) for engine, outcome, _ in page.attempts], page
        else:
            assert page.attempts and all(outcome != "ok" for _, outcome, _ in page.attempts), page
    outage = [page for page in soak.pages if ("vllm", "error", "engine_unavailable") in page.attempts]
    assert outage, "the 20 s engine outage left no engine_unavailable attempt"
    (poison,) = [page for page in soak.pages if page.document == "poison.pdf"]
    assert any(engine == "vllm" and outcome == "error" for engine, outcome, _ in poison.attempts), poison
    assert poison.status == "failed" or poison.engine != "vllm", poison


def test_no_page_silently_changed_engine(soak: ChaosReport) -> None:
    """Only the poison page (which crashes vllm every time) may be read by another engine."""
    moved = [page.document for page in soak.degraded() if page.document != "poison.pdf"]
    assert not moved, f"{len(moved)} pages moved from vllm to another engine: {moved[:5]}"
