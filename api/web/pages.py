"""The page's routes for signing in and for jobs: list, submit, follow live, cancel, redo degraded pages.

Every read goes through the REST read model with the signed-in caller, so a tenant's page shows
exactly what its key sees over ``/v1``. Every form posts with a CSRF token; a session is checked
before a request body is read.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from ocrq.api.rest.queries import job_detail, list_documents
from ocrq.api.rest.routes import jobs as rest_jobs
from ocrq.api.rest.routes.common import JobId
from ocrq.api.rest.security import authenticate, hash_key
from ocrq.api.web.progress import job_progress, jobs_progress, page_statuses, progress_events, snapshot
from ocrq.api.web.rendering import WebRoute, page
from ocrq.api.web.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    WebSession,
    check_csrf,
    check_same_origin,
    current_session,
    key_row,
    new_login_token,
    signer,
)
from ocrq.api.web.submit import admit, offer, paths_submission, receive_upload_form
from ocrq.errors import RequestError, Unauthorized
from ocrq.schemas import JobStatus

router = APIRouter(route_class=WebRoute, include_in_schema=False)
JOBS_PER_PAGE = 50
LOGIN_COOKIE_AGE_S = 3600


def signed_in(request: Request) -> WebSession:
    session = current_session(request)
    request.state.web_session = session
    return session


SessionDep = Annotated[WebSession, Depends(signed_in)]


def posted(request: Request, session: SessionDep) -> WebSession:
    """A signed-in form post from this site (the token itself is checked once the form is read)."""
    check_same_origin(request)
    return session


PostDep = Annotated[WebSession, Depends(posted)]


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    token = new_login_token()
    response = page(request, "login.html", next=_local(next), token=token, error=None)
    signer(request).set_cookie(response, LOGIN_COOKIE, token, LOGIN_COOKIE_AGE_S)
    return response


@router.post("/login")
async def login(
    request: Request,
    key: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    check_same_origin(request)
    check_csrf(request.cookies.get(LOGIN_COOKIE, ""), csrf)
    sessions = request.app.state.sessions
    try:
        caller = await run_in_threadpool(authenticate, sessions, key.strip())
    except Unauthorized as error:
        token = new_login_token()
        response = page(request, "login.html", 401, next=_local(next), token=token, error=error.message)
        signer(request).set_cookie(response, LOGIN_COOKIE, token, LOGIN_COOKIE_AGE_S)
        return response
    row = await run_in_threadpool(key_row, sessions, caller)
    response = RedirectResponse(_local(next), status_code=303)
    cookie = signer(request).cookie_for(row.id, hash_key(key.strip()))
    signer(request).set_cookie(response, SESSION_COOKIE, cookie, int(signer(request).lifetime_s))
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


def _local(target: str) -> str:
    """Only a path on this site: a sign-in link must not send the user elsewhere afterwards."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@router.post("/logout")
async def logout(session: PostDep, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(session.csrf, csrf)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
async def jobs_page(
    request: Request,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[str, Query(description="A job status, or empty for every job")] = "",
) -> Response:
    statuses = [s.value for s in JobStatus]
    if status and status not in statuses:
        raise RequestError(f"status must be one of {', '.join(statuses)}")
    sessions, per_page = request.app.state.sessions, JOBS_PER_PAGE
    jobs, count = await run_in_threadpool(
        jobs_progress, sessions, session.caller, per_page, offset, status or None
    )
    context: dict[str, Any] = {
        "jobs": jobs,
        "count": count,
        "offset": offset,
        "per_page": per_page,
        "statuses": statuses,
    }
    return page(request, "jobs.html", session=session, status=status, **context)


@router.get("/submit")
def submit_form(request: Request, session: SessionDep) -> Response:
    return page(request, "submit.html", session=session, offer=offer(request.app.state.settings))


@router.post("/submit/upload")
async def submit_upload(request: Request, session: PostDep) -> Response:
    submission = await receive_upload_form(request, request.app.state.settings, session)
    job_id = await run_in_threadpool(admit, request, submission, session)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/submit/paths")
async def submit_paths(request: Request, session: PostDep) -> Response:
    fields = dict((await request.form()).items())
    check_csrf(session.csrf, str(fields.get("csrf") or ""))
    submission = await run_in_threadpool(paths_submission, fields, request.app.state.settings)
    job_id = await run_in_threadpool(admit, request, submission, session)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.get("/jobs/{job_id}")
async def job_page(
    request: Request,
    job_id: JobId,
    session: SessionDep,
    redone: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """The job with its documents; ``redone`` is set by the redo form's redirect, so the page says how
    many pages went (the form posted, the answer is a plain GET that a reload repeats harmlessly)."""
    sessions, caller = request.app.state.sessions, session.caller
    detail = await run_in_threadpool(job_detail, sessions, caller, job_id)
    progress = await run_in_threadpool(job_progress, sessions, caller, job_id)
    documents, count = await run_in_threadpool(list_documents, sessions, caller, job_id, 500, 0)
    statuses = await run_in_threadpool(page_statuses, sessions, caller, [d.id for d in documents])
    outputs = request.app.state.settings.outputs
    return page(
        request,
        "job.html",
        session=session,
        job=detail,
        progress=progress,
        documents=documents,
        document_count=count,
        page_statuses=statuses,
        outputs=outputs,
        redone=redone,
    )


@router.post("/jobs/{job_id}/cancel")
async def cancel(
    request: Request, job_id: JobId, session: PostDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    """Exactly ``DELETE /v1/jobs/{id}`` for the signed-in caller (404 not theirs, 409 finished)."""
    check_csrf(session.csrf, csrf)
    await rest_jobs.cancel_job(job_id, session.caller, request.app.state.sessions)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/redo")
async def redo_degraded(
    request: Request, job_id: JobId, session: PostDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    """Exactly ``POST /v1/jobs/{id}/redo?pages=degraded`` for the signed-in caller (404 not theirs);
    the job page then says how many pages went and follows the degraded count live."""
    check_csrf(session.csrf, csrf)
    state = request.app.state
    accepted = await rest_jobs.redo_job_pages(job_id, session.caller, state.sessions, state.submitter)
    return RedirectResponse(f"/jobs/{job_id}?redone={accepted.pages}", status_code=303)


@router.get("/events/jobs")
async def job_events(
    request: Request, session: SessionDep, job: Annotated[int | None, Query(ge=1)] = None
) -> Response:
    """Live progress as server-sent events: every job on the list, or one job. A client that does not
    ask for an event stream (``Accept: text/event-stream``, as EventSource does) gets one JSON snapshot."""
    sessions = request.app.state.sessions
    if job is not None:
        await run_in_threadpool(job_progress, sessions, session.caller, job)  # 404 before streaming
    if "text/event-stream" not in request.headers.get("accept", ""):
        jobs = await run_in_threadpool(snapshot, sessions, session.caller, job)
        return JSONResponse([asdict(one) for one in jobs], headers={"Cache-Control": "no-store"})
    stream = progress_events(request, sessions, session.caller, job)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
