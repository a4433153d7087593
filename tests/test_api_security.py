"""API keys, server-side path confinement, upload limits: what the API refuses, and how."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ocrq.api.cli import cli
from ocrq.db.models import ApiKey, Document
from ocrq.settings import Settings
from ocrq.worker.batch import open_database
from tests.api_support import Api, running_api
from tests.factories import make_text_image, make_text_pdf


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    root = tmp_path / "shared" / "scans"
    root.mkdir(parents=True)
    make_text_image("Allowed scan").save(root / "ok.png")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "private" / "secret.png"
    secret.parent.mkdir()
    make_text_image("Private scan").save(secret)
    return secret


@pytest.fixture
def settings_for(
    make_settings: Callable[..., Settings], tmp_path: Path, allowed: Path
) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
        base = {"tesseract_langs": "eng", "api_upload_dir": tmp_path / "uploads", "api_path_roots": [allowed]}
        return make_settings(**(base | overrides))

    return build


@pytest.fixture
def api(settings_for: Callable[..., Settings]) -> Iterator[Api]:
    with running_api(settings_for()) as api:
        yield api


def test_requests_without_a_valid_key_get_401_and_health_stays_open(api: Api) -> None:
    for headers in (
        {},
        {"X-API-Key": "ocrq_not-a-real-key"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer ocrq_not-a-real-key"},
        {"Authorization": f"Basic {api.key}"},  # the key, but not as a bearer token
        {"Authorization": "Bearer ", "X-API-Key": api.key},  # one good and one empty credential
        {"Authorization": f"Bearer {api.key}", "X-API-Key": "ocrq_not-a-real-key"},  # one good, one bad
        {"Authorization": f"Bearer {api.key}", "X-API-Key": " "},
    ):
        response = api.client.get("/v1/jobs", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == 'Bearer realm="ocrq", ApiKey'
    assert api.client.get("/v1/jobs", headers=api.headers).status_code == 200
    bearer = api.client.get("/v1/jobs", headers={"Authorization": f"Bearer {api.key}"})
    assert bearer.status_code == 200, bearer.text  # what OpenAI-style clients send
    both = {"Authorization": f"Bearer {api.key}", "X-API-Key": api.key}
    assert api.client.get("/v1/jobs", headers=both).status_code == 200  # the same key twice is fine
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert api.client.get(open_path).status_code == 200


def test_keys_cli_prints_a_key_once_stores_its_hash_and_revokes_it(api: Api) -> None:
    env = {"OCRQ_DATABASE_URL": api.settings.database_url}
    added = CliRunner().invoke(cli, ["keys", "add", "scanner-7"], env=env)
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert key.startswith("ocrq_") and len(key) > 40
    assert api.client.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200
    _, sessions = open_database(api.settings)
    with sessions() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.name == "scanner-7")).one()
        assert key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
        assert row.last_used_at is not None
    listing = CliRunner().invoke(cli, ["keys", "list"], env=env)
    assert "scanner-7" in listing.stdout and key[:12] in listing.stdout and key not in listing.stdout
    assert CliRunner().invoke(cli, ["keys", "add", "scanner-7"], env=env).exit_code == 2
    assert CliRunner().invoke(cli, ["keys", "revoke", "scanner-7"], env=env).exit_code == 0
    revoked = api.client.get("/v1/jobs", headers={"X-API-Key": key})
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "unauthorized"
    assert "revoked" in CliRunner().invoke(cli, ["keys", "list"], env=env).stdout
    assert CliRunner().invoke(cli, ["keys", "revoke", "scanner-7"], env=env).exit_code == 2


def _submit_paths(api: Api, *paths: str) -> tuple[int, dict]:
    response = api.client.post("/v1/jobs", json={"paths": list(paths)}, headers=api.headers)
    return response.status_code, response.json()


def test_paths_inside_the_roots_are_accepted_and_resolved(api: Api, allowed: Path) -> None:
    (allowed / "sub").mkdir()
    (allowed / "sub" / "link.png").symlink_to(allowed / "ok.png")  # a symlink that stays inside is fine
    status, body = _submit_paths(api, str(allowed / "ok.png"), "sub")
    assert status == 202, body
    job = api.wait(body["id"])
    assert job["status"] == "done" and job["counts"]["documents"] == {"done": 2}
    _, sessions = open_database(api.settings)
    with sessions() as session:
        stored = session.scalars(select(Document.path).where(Document.job_id == body["id"])).all()
    assert sorted(stored) == [str(allowed / "ok.png")] * 2  # symlinks resolved before workers open them


@pytest.mark.parametrize(
    "name",
    ["dotdot", "absolute", "symlinked_file", "symlink_in_folder", "symlinked_root_escape"],
)
def test_traversal_and_symlink_escapes_are_refused(api: Api, allowed: Path, outside: Path, name: str) -> None:
    if name == "symlinked_file":
        (allowed / "innocent.png").symlink_to(outside)
    if name == "symlink_in_folder":
        (allowed / "batch").mkdir()
        make_text_image("fine").save(allowed / "batch" / "fine.png")
        (allowed / "batch" / "sneaky.png").symlink_to(outside)
    if name == "symlinked_root_escape":
        (allowed / "up").symlink_to(outside.parent, target_is_directory=True)
    path = {
        "dotdot": "../../private/secret.png",
        "absolute": str(outside),
        "symlinked_file": "innocent.png",
        "symlink_in_folder": "batch",
        "symlinked_root_escape": "up/secret.png",
    }[name]
    status, body = _submit_paths(api, path)
    assert status == 403, body
    assert body["error"]["code"] == "path_not_allowed"
    assert api.get("/v1/jobs").json()["count"] == 0


def test_missing_paths_and_servers_without_roots(api: Api, settings_for: Callable[..., Settings]) -> None:
    status, body = _submit_paths(api, "nope.png")
    assert (status, body["error"]["code"]) == (422, "not_found")
    with running_api(settings_for(api_path_roots=[])) as closed:
        status, body = _submit_paths(closed, "ok.png")
    assert (status, body["error"]["code"]) == (403, "path_not_allowed")


def test_an_oversize_upload_is_refused_with_413_and_leaves_nothing(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000))
    with running_api(settings_for(api_max_upload_bytes=100_000)) as api:
        declared = api.upload(big)
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "too_large"
        streamed = api.client.post(  # no Content-Length: the cap is enforced while the body streams
            "/v1/jobs",
            content=_chunked_multipart(big.read_bytes()),
            headers=api.headers | {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "too_large"
        assert api.get("/v1/jobs").json()["count"] == 0
    assert not [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()]


BOUNDARY = "ocrq-test-boundary"


def _chunked_multipart(data: bytes) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for start in range(0, len(data), 16_384):
        yield data[start : start + 16_384]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def test_page_and_file_caps_per_job(settings_for: Callable[..., Settings], tmp_path: Path) -> None:
    long_pdf = make_text_pdf(tmp_path / "long.pdf", ["one", "two", "three"])
    with running_api(settings_for(api_max_pages_per_job=2, api_max_files_per_job=2)) as api:
        pages = api.upload(long_pdf)
        assert pages.status_code == 413 and "pages" in pages.json()["error"]["message"]
        files = api.upload(long_pdf, long_pdf, long_pdf)
        assert files.status_code == 413 and "files" in files.json()["error"]["message"]
        assert api.get("/v1/jobs").json()["count"] == 0


def test_uploaded_names_cannot_climb_out_of_the_upload_folder(api: Api, tmp_path: Path) -> None:
    scan = tmp_path / "scan.png"
    make_text_image("Name games").save(scan)
    files = [
        ("files", ("../../../evil.png", scan.read_bytes())),
        ("files", (".hidden.png", scan.read_bytes())),
    ]
    response = api.client.post("/v1/jobs", files=files, headers=api.headers)
    assert response.status_code == 202, response.text
    job = api.wait(response.json()["id"])
    assert job["counts"]["documents"] == {"done": 2}
    paths = [d["path"] for d in api.get(f"/v1/jobs/{job['id']}/documents").json()["data"]]
    assert paths == ["evil.png", "hidden.png"]
    assert not (tmp_path / "evil.png").exists()
