"""Jobs close exactly once however their documents interleave; leases; the backlog counts live work only."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

import ocrq.jobs.store as store_module
from ocrq.api.rest.admission import backlog
from ocrq.db.migrations import upgrade
from ocrq.db.models import Job, Page, utcnow
from ocrq.db.session import make_engine, make_session_factory
from ocrq.errors import NoEngineConfigured
from ocrq.jobs.store import JobStore
from ocrq.schemas import JobStatus
from ocrq.worker.queue.leases import LeaseHeartbeat
from tests.test_job_store import _job_with_pages, _ok


@pytest.fixture
def postgres_sessions(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield make_session_factory(engine)
    engine.dispose()


def _finish_together(
    store: JobStore, claims: list, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[bool], list[BaseException]]:
    """Both transactions have counted their document's last page before either looks at the job."""
    barrier = threading.Barrier(len(claims), timeout=20)
    real_lock, real_finalize = store_module._lock_job, store_module.finalize_job
    closed: list[bool] = []

    def lock_after_everyone_counted(session: Session, job_id: int) -> None:
        barrier.wait()
        real_lock(session, job_id)

    def finalize_and_record(session: Session, job_id: int) -> bool:
        closed.append(real_finalize(session, job_id))
        return closed[-1]

    monkeypatch.setattr(store_module, "_lock_job", lock_after_everyone_counted)
    monkeypatch.setattr(store_module, "finalize_job", finalize_and_record)
    errors: list[BaseException] = []

    def finish(claim: store_module.PageClaim) -> None:
        try:
            store.finish_page(claim, _ok())
        except BaseException as error:  # reported by the test
            errors.append(error)

    threads = [threading.Thread(target=finish, args=(claim,)) for claim in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return closed, errors


def test_two_documents_finishing_at_once_close_their_job_exactly_once(
    postgres_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write skew seen in production: each transaction read the other's document as open."""
    store = JobStore(postgres_sessions)
    for _round in range(3):
        job_id, [[first], [second]] = _job_with_pages(postgres_sessions, [1, 1])
        claims = [store.claim_page(first), store.claim_page(second)]
        closed, errors = _finish_together(store, claims, monkeypatch)
        monkeypatch.undo()
        assert not errors, errors
        assert sorted(closed) == [False, True]  # one transaction waited, saw both finished, closed it
        with postgres_sessions() as session:
            job = session.get_one(Job, job_id)
            assert (job.status, job.finished_at is not None) == (JobStatus.DONE, True)


def test_the_reconciler_closes_a_job_whose_documents_all_finished(
    postgres_sessions: sessionmaker[Session],
) -> None:
    from ocrq.settings import build_settings
    from ocrq.worker.queue.reconcile import Reconciler

    store = JobStore(postgres_sessions)
    job_id, [[page]] = _job_with_pages(postgres_sessions, [1])
    store.finish_page(store.claim_page(page), _ok())
    with postgres_sessions.begin() as session:  # as if the closing transaction had been lost
        session.execute(update(Job).where(Job.id == job_id).values(status="running", finished_at=None))
    untouched, _ = _job_with_pages(postgres_sessions, [2])
    settings = build_settings(database_url="sqlite://", broker_url="redis://127.0.0.1:1/0")
    reconciler = Reconciler(postgres_sessions, settings, probe=None, dispatcher=None)  # type: ignore[arg-type]
    assert reconciler.close_finished_jobs() == 1
    assert reconciler.close_finished_jobs() == 0
    with postgres_sessions() as session:
        assert session.get_one(Job, job_id).status == JobStatus.DONE
        assert session.get_one(Job, untouched).finished_at is None


def test_a_dead_workers_page_is_claimable_after_its_lease_a_live_ones_is_not(
    sessions: sessionmaker[Session],
) -> None:
    live, other = JobStore(sessions, lease_seconds=2), JobStore(sessions, lease_seconds=2)
    _job_id, [[renewed, abandoned]] = _job_with_pages(sessions, [2])
    assert live.claim_page(renewed) and live.claim_page(abandoned)
    live.forget(abandoned)  # its worker "died": nobody renews this one
    heartbeat = LeaseHeartbeat(live, 2).start()
    try:
        time.sleep(3)
        assert other.claim_page(renewed) is None
        assert other.claim_page(abandoned) is not None
    finally:
        heartbeat.stop()


def test_a_page_stuck_past_the_time_limit_is_taken_over_even_while_renewed(
    sessions: sessionmaker[Session],
) -> None:
    live, other = JobStore(sessions, lease_seconds=60), JobStore(sessions, lease_seconds=60, stuck_seconds=60)
    _job_id, [[page]] = _job_with_pages(sessions, [1])
    assert live.claim_page(page)
    assert other.claim_page(page) is None
    with sessions.begin() as session:  # claimed 61 s ago, lease fresh
        session.execute(
            update(Page).where(Page.id == page).values(started_at=utcnow() - timedelta(seconds=61))
        )
    assert other.claim_page(page) is not None


def test_pages_of_a_job_that_failed_as_a_whole_leave_the_backlog(sessions: sessionmaker[Session]) -> None:
    store = JobStore(sessions)
    failed_job, _ = _job_with_pages(sessions, [3, 2])
    live_job, [[claimed, _queued]] = _job_with_pages(sessions, [2])
    store.claim_page(claimed)
    assert backlog(sessions) == 7
    store.fail_open_documents(failed_job, NoEngineConfigured("no usable OCR engine"))
    assert backlog(sessions) == 2
    with sessions() as session:
        assert session.get_one(Job, failed_job).status == JobStatus.FAILED
    store.cancel_job(live_job)
    assert backlog(sessions) == 0


def test_pages_created_but_never_sent_are_found_lost(
    postgres_sessions: sessionmaker[Session], redis_url: str
) -> None:
    """A worker killed between creating a document's pages and sending them left them unsent for good."""
    from ocrq.settings import build_settings
    from ocrq.worker.queue.broker_probe import RedisBrokerProbe
    from ocrq.worker.queue.reconcile import Reconciler

    job_id, [[never_sent, sent]] = _job_with_pages(postgres_sessions, [2])
    long_ago = utcnow() - timedelta(seconds=600)
    with postgres_sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(queue="gpu"))
        session.execute(
            update(Page).where(Page.id == never_sent).values(queued_at=long_ago, enqueued_at=None)
        )
        session.execute(update(Page).where(Page.id == sent).values(queued_at=long_ago, enqueued_at=utcnow()))
    settings = build_settings(database_url="sqlite://", broker_url=redis_url, reconcile_grace=120)
    probe = RedisBrokerProbe(redis_url, settings.visibility_timeout)
    try:
        reconciler = Reconciler(postgres_sessions, settings, probe, dispatcher=None)  # type: ignore[arg-type]
        assert reconciler.lost_pages() == [never_sent]  # the other was sent just now: within the grace
    finally:
        probe.close()
