"""Degradation is a decision, and it is visible.

A primary engine that is briefly down is waited for (``OCRQ_FALLBACK_AFTER_SECONDS``) instead of
handing pages to Tesseract; pages a fallback engine did read are counted as ``degraded`` in
``batch.json``, the summary, the API and ``/metrics``; ``ocrq redo JOB --degraded`` reads exactly
those again with the primary engine, keeping the old result until the new one lands.

The vLLM here is our loopback fault server (a real one cannot be made to die on cue for a
given number of seconds); the chain, breaker, pipeline, runner, database and Tesseract are real.
The issue's 20-second outage is scaled down to 2 s, the grace period to seconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from ocrq.api.cli import cli
from ocrq.api.rest.app import create_app
from ocrq.db.models import Attempt, Job, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.jobs.access import Role
from ocrq.jobs.degraded import record_primary_engine
from ocrq.settings import Settings
from ocrq.worker.batch import BatchRequest, open_database, run_embedded_batch
from ocrq.worker.redo import plan_redo, redo_here
from tests.api_support import make_key
from tests.factories import make_text_pdf
from tests.fault_server import FaultServer, request_image, running_fault_server

PAGES = 8
OUTAGE_S = 2.0


def _settings(make_settings: Callable[..., Settings], server: FaultServer, grace: float) -> Settings:
    return make_settings(
        engines=["vllm", "tesseract"], vllm_url=server.url, vllm_served_model_name="test-model",
        vllm_retries=0, prompt_mode="text_only", page_workers=2, tesseract_langs="eng",
        breaker_failures=2, breaker_reset_seconds=0.3, fallback_after_seconds=grace,
        text_layer="off",  # the typed PDF stands in for a scan
    )  # fmt: skip


def _run(settings: Settings, tmp_path: Path) -> tuple[dict, float]:
    make_text_pdf(tmp_path / "in.pdf", [f"Grace test page {n}" for n in range(PAGES)])
    started = time.monotonic()
    batch = run_embedded_batch(settings, BatchRequest([tmp_path / "in.pdf"], tmp_path / "out"))
    return batch, time.monotonic() - started


def _engines_and_attempts(settings: Settings) -> tuple[list[str | None], list[str]]:
    _, sessions = open_database(settings)
    with sessions() as session:
        engines = list(session.scalars(select(Page.engine).order_by(Page.index)))
        attempts = [f"{a.engine}:{a.outcome}" for a in session.scalars(select(Attempt).order_by(Attempt.id))]
    return engines, attempts


def test_a_brief_outage_is_waited_for_and_no_page_degrades(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    with running_fault_server() as server:
        settings = _settings(make_settings, server, grace=30)
        server.outage_at_first_request(OUTAGE_S)
        batch, elapsed = _run(settings, tmp_path)
    engines, attempts = _engines_and_attempts(settings)
    assert engines == ["vllm"] * PAGES
    assert batch["counts"]["pages"] == {"total": PAGES, "done": PAGES, "failed": 0, "degraded": 0}
    assert batch["primary_engine"] == "vllm" and batch["status"] == "done"
    assert server.refused >= 1 and "vllm:error" in attempts  # the outage happened and is on record
    assert "tesseract:ok" not in attempts
    assert OUTAGE_S <= elapsed < OUTAGE_S + 20


def test_without_grace_the_fallback_pages_are_degraded_and_redo_reads_them_again(
    tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with running_fault_server() as server:
        settings = _settings(make_settings, server, grace=0)
        watcher = _down_until_a_page_degrades(server, settings)
        batch, _ = _run(settings, tmp_path)
        watcher.join(10)
        engines, _ = _engines_and_attempts(settings)
        degraded = engines.count("tesseract")
        assert degraded > 0 and batch["counts"]["pages"]["degraded"] == degraded
        assert batch["counts"]["pages"]["done"] == PAGES and batch["status"] == "done"
        assert batch["documents"][0]["pages_degraded"] == degraded
        _assert_api_shows(settings, batch["job_id"], degraded)

        server.outage(60)  # down again: a redo keeps every old result and records its attempts
        _, sessions = open_database(settings)
        plan = plan_redo(sessions, batch["job_id"])
        assert len(plan.page_ids) == degraded and plan.primary == "vllm"
        before = _texts(settings)
        assert redo_here(sessions, settings, plan) == 0
        assert _texts(settings) == before
        assert _engines_and_attempts(settings)[0] == engines

        server.down_until = 0  # back: the redo replaces exactly the degraded pages
        env = _env(settings, server)
        result = CliRunner().invoke(
            cli, ["redo", str(batch["job_id"]), "--degraded", "--out", "again"], env=env
        )
        assert result.exit_code == 0, result.output
        assert f"{degraded} of {degraded} degraded page(s) now read by vllm" in result.output
    after = _texts(settings)
    assert _engines_and_attempts(settings)[0] == ["vllm"] * PAGES
    assert [after[i] for i in range(PAGES) if engines[i] == "vllm"] == [
        before[i] for i in range(PAGES) if engines[i] == "vllm"
    ]  # pages the primary had read are untouched
    redone = json.loads((tmp_path / "again" / "batch.json").read_text())
    assert redone["counts"]["pages"]["degraded"] == 0


def test_an_outage_longer_than_the_grace_falls_back_after_it(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    with running_fault_server() as server:
        settings = _settings(make_settings, server, grace=1.0)
        server.outage(120)
        batch, elapsed = _run(settings, tmp_path)
    assert batch["counts"]["pages"] == {"total": PAGES, "done": PAGES, "failed": 0, "degraded": PAGES}
    assert 1.0 <= elapsed < 30  # waited the grace period once, not per page


def test_the_summary_says_which_pages_degraded(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    with running_fault_server() as server:
        settings = _settings(make_settings, server, grace=0)
        server.outage(300)
        make_text_pdf(tmp_path / "in.pdf", ["Summary page one", "Summary page two"])
        env = _env(settings, server)
        result = CliRunner().invoke(cli, ["submit-batch", str(tmp_path / "in.pdf"), "--out", "out"], env=env)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # as printed, without the terminal's line wrapping
    assert "2 done (2 degraded)" in said
    assert "2 page(s) degraded" in said and "ocrq redo 1 --degraded" in said


def _down_until_a_page_degrades(server: FaultServer, settings: Settings) -> threading.Thread:
    """Down from the first request until Tesseract has read a page: some pages degrade, and
    the rest are read by vLLM again, however fast or slow this machine is."""
    server.outage_at_first_request(600)

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "tesseract" not in _engines_or_none(settings):
            time.sleep(0.05)
        server.down_until = 0

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def _engines_or_none(settings: Settings) -> list[str | None]:
    """Read only: the batch migrates the database itself, and two migrations must not race."""
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            return list(session.scalars(select(Page.engine)))
    except OperationalError:  # the batch has not created its tables yet
        return []
    finally:
        engine.dispose()


def _texts(settings: Settings) -> list[str | None]:
    _, sessions = open_database(settings)
    with sessions() as session:
        return list(session.scalars(select(Page.text).order_by(Page.index)))


def _env(settings: Settings, server: FaultServer) -> dict[str, str]:
    return {
        "OCRQ_DATABASE_URL": settings.database_url,
        "OCRQ_ENGINES": "vllm,tesseract",
        "OCRQ_VLLM_URL": server.url,
        "OCRQ_VLLM_SERVED_MODEL_NAME": "test-model",
        "OCRQ_VLLM_RETRIES": "0",
        "OCRQ_PROMPT_MODE": "text_only",
        "OCRQ_TESSERACT_LANGS": "eng",
        "OCRQ_TEXT_LAYER": "off",
        "OCRQ_FALLBACK_AFTER_SECONDS": str(settings.fallback_after_seconds),
    }


def _assert_api_shows(settings: Settings, job_id: int, degraded: int) -> None:
    key = make_key(settings, role=Role.ADMIN)
    with TestClient(create_app(settings)) as client:
        headers = {"X-API-Key": key}
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        assert job["counts"]["pages"]["degraded"] == degraded and job["primary_engine"] == "vllm"
        listed = client.get("/v1/jobs", headers=headers).json()["data"][0]
        assert listed["counts"]["pages"]["degraded"] == degraded
        documents = client.get(f"/v1/jobs/{job_id}/documents", headers=headers).json()["data"]
        assert documents[0]["pages_degraded"] == degraded
        one = client.get(f"/v1/documents/{documents[0]['id']}", headers=headers).json()
        assert one["pages_degraded"] == degraded
        metrics = client.get("/metrics").text
        assert f'ocrq_pages_degraded{{engine="tesseract"}} {float(degraded)}' in metrics


def test_the_api_redoes_degraded_pages_for_the_owner_only(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    with running_fault_server() as server:
        settings = _settings(make_settings, server, grace=0)
        watcher = _down_until_a_page_degrades(server, settings)
        batch, _ = _run(settings, tmp_path)
        watcher.join(10)
        degraded = batch["counts"]["pages"]["degraded"]
        assert degraded > 0
        server.down_until = 0
        admin, stranger = make_key(settings, role=Role.ADMIN), make_key(settings)
        with TestClient(create_app(settings)) as client:
            url = f"/v1/jobs/{batch['job_id']}/redo"
            refused = client.post(url, params={"pages": "degraded"}, headers={"X-API-Key": stranger})
            assert refused.status_code == 404  # a CLI job: only admin keys see it
            assert client.post(url, params={"pages": "all"}, headers={"X-API-Key": admin}).status_code == 422
            accepted = client.post(url, params={"pages": "degraded"}, headers={"X-API-Key": admin})
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["pages"] == degraded and accepted.json()["primary_engine"] == "vllm"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _degraded_now(client, admin, batch["job_id"]):
                time.sleep(0.2)
            assert _degraded_now(client, admin, batch["job_id"]) == 0
    assert _engines_and_attempts(settings)[0] == ["vllm"] * PAGES


def _degraded_now(client: TestClient, key: str, job_id: int) -> int:
    job = client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": key}).json()
    return job["counts"]["pages"]["degraded"]


def test_running_the_batch_again_rereads_degraded_pages_and_reuses_the_rest(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    with running_fault_server() as server:
        settings = _settings(make_settings, server, grace=0)
        watcher = _down_until_a_page_degrades(server, settings)
        first, _ = _run(settings, tmp_path)
        watcher.join(10)
        degraded = first["counts"]["pages"]["degraded"]
        assert 0 < degraded < PAGES
        again = run_embedded_batch(settings, BatchRequest([tmp_path / "in.pdf"], tmp_path / "again"))
    assert again["counts"]["pages"]["degraded"] == 0 and again["counts"]["engines"] == {"vllm": PAGES}
    reused = [p["reused"] for p in json.loads((tmp_path / "again" / "in.pdf.json").read_text())["pages"]]
    assert reused.count(True) == PAGES - degraded  # the primary's pages were carried over, not redone


def test_the_best_ranked_chain_names_the_primary_engine(make_settings: Callable[..., Settings]) -> None:
    """Workers differ: one without vLLM must not make vLLM's pages count as degraded."""
    settings = make_settings()
    _, sessions = open_database(settings)
    with sessions.begin() as session:
        session.add(Job(result_key="k"))
    preference = ["vllm", "transformers", "tesseract"]
    record_primary_engine(sessions, 1, "tesseract", preference)  # a CPU-only worker came first
    record_primary_engine(sessions, 1, "vllm", preference)  # a GPU worker outranks it
    record_primary_engine(sessions, 1, "transformers", preference)  # and is not outranked back
    with sessions() as session:
        assert session.get_one(Job, 1).primary_engine == "vllm"


def test_a_poison_page_waits_the_grace_on_its_own_clock_while_other_pages_succeed(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """The engine's outage clock restarts at every success; a page that alone keeps crashing it must
    still fall back once it has itself waited the grace, not when the other pages run out."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_text_pdf(folder / "a-poison.pdf", ["The page that crashes its engine"], size=(840.0, 120.0))
    make_text_pdf(folder / "b-healthy.pdf", [f"Healthy page {n}" for n in range(30)], size=(298.0, 420.0))
    with running_fault_server() as server:
        server.answer_delay = 0.4  # the healthy pages keep succeeding for about 12 s on one thread
        server.crashes_on = lambda request: request_image(request).width > 3 * request_image(request).height
        settings = _settings(make_settings, server, grace=2)
        batch = run_embedded_batch(settings, BatchRequest([folder], tmp_path / "out"))
    assert batch["status"] == "done"
    _, sessions = open_database(settings)
    with sessions() as session:
        rows = session.execute(select(Page.engine, Page.finished_at).order_by(Page.id)).all()
    poison = [row for row in rows if row.engine == "tesseract"]
    healthy = [row for row in rows if row.engine == "vllm"]
    assert len(poison) == 1 and len(healthy) == 30, rows  # only the poison page degraded
    later = [row for row in healthy if row.finished_at > poison[0].finished_at]
    assert len(later) >= 5, "the poison page waited until the healthy pages ran out"
