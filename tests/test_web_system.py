"""The system panel with a broker: Celery workers asked by ping, queue depth read from Redis.

No browser needed: the panel is server-rendered, so a signed-in HTTP client reads what a person sees.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import redis
from fastapi.testclient import TestClient

from ocrq.api.rest.app import create_app
from ocrq.api.rest.security import revoke_key
from ocrq.api.web.system import system_view
from ocrq.db.models import Attempt, Document, Job, Page, utcnow
from ocrq.jobs.access import OPERATOR, Role
from ocrq.settings import Settings
from ocrq.worker.batch import open_database
from tests.api_support import Api, make_key
from tests.factories import make_text_image


def signed_in(client: TestClient, key: str) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    response = client.post("/login", data={"csrf": token.group(1), "key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text


def test_queue_mode_panel_reads_the_broker_and_asks_the_workers(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    settings = make_settings(broker_url=redis_url, flower_url="http://127.0.0.1:5555")
    admin = make_key(settings, "ops", Role.ADMIN)
    broker = redis.Redis.from_url(redis_url)
    broker.rpush(settings.gpu_queue, b"{}", b"{}", b"{}")  # three tasks waiting, as kombu keeps them
    with TestClient(create_app(settings)) as client:
        signed_in(client, admin)
        page = client.get("/system")
    broker.close()
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))
    assert "Mode: queue" in text and "0 worker(s) answered within 1 s" in text
    assert f"{settings.gpu_queue} 3" in text and f"{settings.cpu_queue} 0" in text
    assert 'href="http://127.0.0.1:5555"' in page.text
    assert "tesseract unknown" in text, "no attempts recorded: the breaker cannot be judged"


def test_breakers_are_judged_from_the_recorded_attempts(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(engines=["vllm", "tesseract"], breaker_failures=3)
    _, sessions = open_database(settings)
    outcomes = {
        # oldest first: vLLM recovered once, then failed retryably three times (a page's own error between)
        "vllm": ["ok", "engine_unavailable", "unreadable", "engine_server_error", "engine_unavailable"],
        "tesseract": ["engine_unavailable"] * 4 + ["ok"],
    }
    with sessions.begin() as session:
        page = Page(
            index=0, document=Document(path="/x", relpath="x", result_key="k", job=Job(result_key="k"))
        )
        session.add(page)
        for engine, codes in outcomes.items():
            for code in codes:
                outcome = "ok" if code == "ok" else "error"
                session.add(
                    Attempt(
                        page=page, engine=engine, outcome=outcome, error_code=None if code == "ok" else code
                    )
                )
    view = system_view(sessions, settings, OPERATOR, None)
    health = {engine.engine: engine for engine in view.engines}
    assert (health["vllm"].state, health["vllm"].trailing_failures) == ("open (judged)", 3)
    assert health["vllm"].last_error == "engine_unavailable"
    assert (health["tesseract"].state, health["tesseract"].trailing_failures) == ("closed", 0)


def test_a_page_whose_upload_was_removed_shows_its_cells_without_a_picture(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(tesseract_langs="eng", api_upload_dir=tmp_path / "uploads")
    key = make_key(settings, "dora")
    make_text_image("Retention removed this upload").save(tmp_path / "gone.png")
    with TestClient(create_app(settings)) as client:
        api = Api(client, key, settings)
        job = api.wait(api.upload(tmp_path / "gone.png").json()["id"])
        (document,) = api.get(f"/v1/jobs/{job['id']}/documents").json()["data"]
        _, sessions = open_database(settings)
        with sessions.begin() as session:
            session.get_one(Job, job["id"]).sources_removed_at = utcnow()
        signed_in(client, key)
        page = client.get(f"/documents/{document['id']}/pages/1")
    assert page.status_code == 200
    assert "deleted after the retention period" in page.text
    assert "<image" not in page.text and page.text.count('class="cell ') >= 1


def test_revoking_the_key_ends_its_sessions_and_sign_out_ends_one(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    first, second = make_key(settings, "erin"), make_key(settings, "frank")
    with TestClient(create_app(settings)) as client:
        signed_in(client, first)
        assert client.get("/", follow_redirects=False).status_code == 200
        _, sessions = open_database(settings)
        assert revoke_key(sessions, "erin")
        gone = client.get("/", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"] == "/login?next=/"
        signed_in(client, second)
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
        assert token is not None
        assert (
            client.post("/logout", data={"csrf": token.group(1)}, follow_redirects=False).status_code == 303
        )
        assert client.get("/", follow_redirects=False).status_code == 303
