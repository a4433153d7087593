"""Tenants see only their own jobs: every route of the app's route table, two tenants, an admin, a CLI job.

The routes are not listed here: they are read from the app, so a route added
later is checked the moment it exists. For a route with ids in its path,
another tenant's resource must be answered exactly like a resource that does
not exist (same status, same error code), while the owner and an admin get
something else (proof that the call reached the resource). For every route,
no response to a non-admin caller may carry another tenant's markers (file
names, OCR text, links).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
from click.testing import CliRunner
from fastapi import Depends, FastAPI
from sqlalchemy import select

from ocrq.api.cli import cli
from ocrq.api.rest.deps import SessionsDep, require_api_key
from ocrq.api.rest.routes.common import MAX_ID, JobId
from ocrq.api.rest.security import hash_key
from ocrq.db.models import ApiKey, Document, Job
from ocrq.jobs.access import Role
from ocrq.settings import Settings
from ocrq.worker.batch import BatchRequest, open_database, run_embedded_batch
from tests.api_support import Api, as_key, make_key, running_api
from tests.factories import make_text_image

PUBLIC_ROUTES = {
    *("/healthz", "/readyz", "/metrics"),
    *("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/docs-assets"),
    *("/login", "/static"),
}
"""Served without a key, on purpose. A new route outside this set must demand a key: under /v1 a
401, on the web page a redirect to sign in (the page's routes take a session cookie, not a header)."""
SAMPLE_BODIES: dict[tuple[str, str], dict[str, Any]] = {}
"""``(method, path) -> JSON body`` for routes whose empty body is refused before they look at the job."""
PATH_MISSING = {"job_id": MAX_ID, "document_id": MAX_ID, "number": 1}


@dataclass
class Tenant:
    name: str
    key: str | None
    ids: dict[str, int] = field(default_factory=dict)
    """Path parameter values naming this tenant's resources (job_id, document_id, number)."""
    markers: list[str] = field(default_factory=list)
    """Strings only a caller allowed to see the resources may ever receive."""


@dataclass
class World:
    api: Api
    alpha: Tenant
    bravo: Tenant
    admin: Tenant
    keyless: Tenant
    """The CLI job: no key made it, so only admins see it."""

    def call(self, who: Tenant | None, method: str, path: str) -> Any:
        if not path.startswith("/v1/"):
            return self._web_call(who, method, path)
        headers = {"Authorization": f"Bearer {who.key}"} if who and who.key else {}
        body = SAMPLE_BODIES.get((method, path))
        return self.api.client.request(method, path, headers=headers, json=body)

    def _web_call(self, who: Tenant | None, method: str, path: str) -> Any:
        """The web page's routes: the tenant's signed session cookie, and its CSRF token on posts."""
        self.api.client.cookies.clear()
        if not (who and who.key):
            return self.api.client.request(method, path, follow_redirects=False)
        signer, row = self.api.client.app.state.web_signer, _key_row(self.api, who.key)  # type: ignore[attr-defined]
        cookie = signer.cookie_for(row.id, row.key_hash)
        form = {"csrf": signer.csrf_for(cookie)} if method == "POST" else None
        headers = {"Cookie": f"ocrq_session={cookie}"}
        return self.api.client.request(method, path, headers=headers, data=form, follow_redirects=False)


def _key_row(api: Api, key: str) -> ApiKey:
    _, sessions = open_database(api.settings)
    with sessions() as session:
        return session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one()


def _scan(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    make_text_image(text).save(folder / name)
    return folder / name


def _submitted(api: Api, tenant: Tenant, scan: Path, word: str) -> None:
    response = as_key(api, tenant.key or "").upload(scan)
    assert response.status_code == 202, response.text
    job = as_key(api, tenant.key or "").wait(response.json()["id"])
    assert job["status"] == "done", job
    (document,) = as_key(api, tenant.key or "").get(f"/v1/jobs/{job['id']}/documents").json()["data"]
    tenant.ids = {"job_id": job["id"], "document_id": document["id"], "number": 1}
    tenant.markers = [scan.name, word, f'"/v1/jobs/{job["id"]}"', f"/v1/documents/{document['id']}/"]


def _cli_job(settings: Settings, tmp_path: Path, tenant: Tenant) -> None:
    scan = _scan(tmp_path / "cli-in", "charlie-cli-scan.png", "Charlie keyless CHARLIEWORD")
    batch = run_embedded_batch(settings, BatchRequest([scan.parent], tmp_path / "cli-out"))
    _, sessions = open_database(settings)
    with sessions() as session:
        document = session.scalars(select(Document).where(Document.job_id == batch["job_id"])).one()
        assert session.get_one(Job, batch["job_id"]).api_key_id is None
        tenant.ids = {"job_id": batch["job_id"], "document_id": document.id, "number": 1}
    tenant.markers = [scan.name, "CHARLIEWORD", f'"/v1/jobs/{batch["job_id"]}"']


@pytest.fixture
def world(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[World]:
    settings = make_settings(tesseract_langs="eng", api_upload_dir=tmp_path / "uploads")
    alpha = Tenant("alpha", make_key(settings, "alpha"))
    bravo = Tenant("bravo", make_key(settings, "bravo"))
    admin = Tenant("admin", make_key(settings, "ops", Role.ADMIN))
    keyless = Tenant("cli", None)
    _cli_job(settings, tmp_path, keyless)
    with running_api(settings) as api:
        _submitted(api, alpha, _scan(tmp_path / "a", "alpha-ledger-scan.png", "Alpha ALPHAWORD"), "ALPHAWORD")
        _submitted(api, bravo, _scan(tmp_path / "b", "bravo-notes-scan.png", "Bravo BRAVOWORD"), "BRAVOWORD")
        yield World(api, alpha, bravo, admin, keyless)


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, included routers resolved; GETs first (cancel, redo last)."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", lambda routes: routes)(app.routes)
    found = {
        (method, context.path)
        for context in contexts
        if context.path is not None
        for method in (context.methods or {"GET"})
        if method not in ("HEAD", "OPTIONS")
    }
    return sorted(found, key=lambda pair: (pair[0] != "GET", pair[1], pair[0]))


def _fill(template: str, ids: dict[str, int], problems: list[str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        if name not in ids:
            problems.append(f"{template}: no test value for path parameter {name!r}; add it to the tenants")
            return "1"
        return str(ids[name])

    return re.sub(r"\{([^}]+)\}", value, template)


def _answer(response: Any) -> tuple[int, str | None]:
    """What a caller learns: the status and the error code (messages may name the id they were given)."""
    try:
        body = response.json()
    except ValueError:
        return response.status_code, None
    error = body.get("error") if isinstance(body, dict) else None
    return response.status_code, error.get("code") if isinstance(error, dict) else None


def ownership_problems(world: World) -> list[str]:
    """Everything the route table does wrong about tenants; an empty list when every route is safe."""
    problems: list[str] = []
    for method, template in _routes(world.api.client.app):  # type: ignore[arg-type]
        if template not in PUBLIC_ROUTES:
            _check_guarded(world, method, template, problems)
        _check_no_foreign_markers(world, method, template, problems)
    return problems


def _check_guarded(world: World, method: str, template: str, problems: list[str]) -> None:
    anonymous = world.call(None, method, _fill(template, world.alpha.ids, problems))
    to_sign_in = anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    if anonymous.status_code != 401 and not (to_sign_in and not template.startswith("/v1/")):
        problems.append(f"{method} {template}: {anonymous.status_code} without a key")
    if "{" not in template:
        return
    missing = _fill(template, PATH_MISSING, problems)
    for owner, others in (
        (world.alpha, (world.bravo,)),
        (world.keyless, (world.alpha, world.bravo)),
    ):
        _check_resource(world, method, template, missing, owner, others, problems)


def _check_resource(
    world: World,
    method: str,
    template: str,
    missing: str,
    owner: Tenant,
    others: tuple[Tenant, ...],
    problems: list[str],
) -> None:
    path = _fill(template, owner.ids, problems)
    for other in others:  # strangers first: their calls must change nothing
        seen, unknown = _answer(world.call(other, method, path)), _answer(world.call(other, method, missing))
        if seen != unknown:
            problems.append(f"{method} {template}: {other.name} on {owner.name}'s gets {seen}, not {unknown}")
    for allowed in ((owner,) if owner.key else ()) + (world.admin,):
        seen = _answer(world.call(allowed, method, path))
        if seen == _answer(world.call(allowed, method, missing)):
            problems.append(
                f"{method} {template}: {allowed.name} on {owner.name}'s resource gets {seen}, the same as "
                "for a missing one: the test cannot tell it reached the resource (add a SAMPLE_BODIES entry?)"
            )


def _check_no_foreign_markers(world: World, method: str, template: str, problems: list[str]) -> None:
    tenants = (world.alpha, world.bravo, world.keyless)
    for caller in (None, world.alpha, world.bravo):
        for subject in tenants:
            body = world.call(caller, method, _fill(template, subject.ids, [])).text
            for target in tenants:
                leaked = [m for m in target.markers if m in body] if caller is not target else []
                if leaked:
                    who = caller.name if caller else "anonymous"
                    problems.append(f"{method} {template} as {who}: {target.name}'s {leaked} in the answer")


def test_every_route_keeps_tenants_apart(world: World) -> None:
    routes = _routes(world.api.client.app)  # type: ignore[arg-type]
    assert ("GET", "/v1/jobs/{job_id}/result") in routes and ("DELETE", "/v1/jobs/{job_id}") in routes
    assert ownership_problems(world) == []
    # the owner still has everything, and nothing of theirs was cancelled by the strangers' tries
    alpha = as_key(world.api, world.alpha.key or "")
    assert alpha.get(f"/v1/jobs/{world.alpha.ids['job_id']}").json()["status"] == "done"


def test_listing_shows_own_jobs_and_admins_see_all_including_the_cli(world: World) -> None:
    def listed(tenant: Tenant) -> set[int]:
        page = as_key(world.api, tenant.key or "").get("/v1/jobs").json()
        assert page["count"] == len(page["data"])
        return {job["id"] for job in page["data"]}

    alpha, bravo, cli_job = (t.ids["job_id"] for t in (world.alpha, world.bravo, world.keyless))
    assert listed(world.alpha) == {alpha}
    assert listed(world.bravo) == {bravo}
    assert listed(world.admin) == {alpha, bravo, cli_job}


def test_a_route_without_an_ownership_check_fails_the_route_table_test(world: World) -> None:
    """The check above is only worth something if it catches the mistake it exists for."""

    def leaky(job_id: JobId, sessions: SessionsDep) -> dict[str, Any]:
        with sessions() as session:  # reads by id alone, as every route did before tenancy
            job = session.get(Job, job_id)
            if job is None:
                return {"error": {"code": "resource_not_found"}}
            return {"id": job.id, "links": {"self": f"/v1/jobs/{job.id}"}}

    app: FastAPI = world.api.client.app  # type: ignore[assignment]
    app.add_api_route("/v1/jobs/{job_id}/leak", leaky, dependencies=[Depends(require_api_key)])
    problems = ownership_problems(world)
    assert problems and all("/v1/jobs/{job_id}/leak" in problem for problem in problems), problems
    assert any("bravo on alpha's" in problem for problem in problems)


def test_keys_are_made_with_a_role(world: World) -> None:
    env = {"OCRQ_DATABASE_URL": world.api.settings.database_url}
    made = CliRunner().invoke(cli, ["keys", "add", "operator-2", "--role", "admin"], env=env)
    assert made.exit_code == 0, made.output
    assert "admin" in CliRunner().invoke(cli, ["keys", "list"], env=env).stdout
    assert CliRunner().invoke(cli, ["keys", "add", "x", "--role", "root"], env=env).exit_code == 2
    _, sessions = open_database(world.api.settings)
    with sessions() as session:
        roles = dict(session.execute(select(ApiKey.name, ApiKey.role)).all())
    assert roles["operator-2"] == "admin" and roles["alpha"] == "submit"  # submit is the default
    admin = as_key(world.api, made.stdout.strip())
    assert admin.get(f"/v1/jobs/{world.keyless.ids['job_id']}").status_code == 200
