"""``/v1/jobs``: submit (uploads or server-side paths), list, read with long-poll, cancel, results."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from ocrq.api.rest.admission import KeyQuota, check_backlog, check_page_cap
from ocrq.api.rest.deps import CallerDep, QuotaDep, SessionsDep, SettingsDep, SubmitterDep, WebhookPolicyDep
from ocrq.api.rest.queries import is_finished, job_detail, job_links, list_documents, list_jobs
from ocrq.api.rest.results import MEDIA_TYPES, output_formats, stream_result
from ocrq.api.rest.routes.common import JobId, Limit, Offset, error_responses
from ocrq.api.rest.schemas import (
    DocumentsPage,
    JobAccepted,
    JobDetail,
    JobOptions,
    JobsPage,
    PathsJobCreate,
    RedoAccepted,
    ResultFormat,
)
from ocrq.api.rest.submission import Owner, Submitter
from ocrq.api.rest.uploads import MultipartUpload, UploadLimits, discard, new_upload_dir, resolve_paths
from ocrq.api.rest.webhook_policy import WebhookPolicy
from ocrq.errors import (
    JobAlreadyFinished,
    JobNotFinished,
    RequestError,
    TooLarge,
    UnsupportedMediaType,
)
from ocrq.jobs.access import Caller
from ocrq.jobs.store import JobStore
from ocrq.schemas import JobStatus
from ocrq.settings import Settings
from ocrq.worker.documents.sources import SourceFile
from ocrq.worker.redo import plan_redo

router = APIRouter(tags=["jobs"], responses=error_responses(401, 422))

POLL_INTERVAL_S = 0.2
M = TypeVar("M", JobOptions, PathsJobCreate)
JSON_BODY_LIMIT = 1024 * 1024

OPTIONS_EXAMPLE = {"engines": ["vllm", "tesseract"], "model": "dots.ocr", "dpi": 200, "priority": 7}
SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "options": {
                            "$ref": "#/components/schemas/JobOptions",
                            "description": "JobOptions as a JSON object (one form field)",
                        },
                    },
                },
                "encoding": {"options": {"contentType": "application/json"}},
                "example": {"files": ["scan-001.pdf"], "options": OPTIONS_EXAMPLE},
            },
            "application/json": {
                "schema": {"$ref": "#/components/schemas/PathsJobCreate"},
                "example": {"paths": ["/data/scans/2026-12"], "options": OPTIONS_EXAMPLE},
            },
        },
    }
}


@dataclass
class Submission:
    sources: list[SourceFile]
    options: JobOptions
    folder: Path | None = None
    """Where the uploads were stored (removed again if the job is refused)."""


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobAccepted,
    openapi_extra=SUBMIT_BODY,
    responses=error_responses(403, 413, 415, 429, 503),
)
async def submit_job(
    request: Request,
    response: Response,
    caller: CallerDep,
    settings: SettingsDep,
    sessions: SessionsDep,
    submitter: SubmitterDep,
    quota: QuotaDep,
    policy: WebhookPolicyDep,
) -> JobAccepted:
    """Upload files (multipart field ``files``) or name server-side ``paths`` (JSON); 202 and links."""
    await run_in_threadpool(check_backlog, sessions, settings)
    submission = await _receive(request, settings)
    try:
        await run_in_threadpool(_check_callback, submission.options, settings, policy)
        pages = await run_in_threadpool(check_page_cap, submission.sources, settings)
        admission = Admission(submitter, quota, settings)
        job_id = await run_in_threadpool(admission.submit, submission, caller, pages)
    except BaseException:
        discard(submission.folder)
        raise
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return JobAccepted(
        id=job_id, status=JobStatus.QUEUED, documents=len(submission.sources), links=job_links(job_id)
    )


@dataclass
class Admission:
    submitter: Submitter
    quota: KeyQuota
    settings: Settings

    def submit(self, submission: Submission, caller: Caller, pages: int) -> int:
        """The key's quota is checked and the job made under one per-key lock."""
        with self.quota.admit(caller, pages, self.settings):
            owner = Owner(caller.key_id, pages)
            return self.submitter.submit(submission.sources, submission.options, owner)


async def _receive(request: Request, settings: Settings) -> Submission:
    content_type = request.headers.get("content-type", "")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.api_max_upload_bytes:
        raise TooLarge(f"the request body exceeds {settings.api_max_upload_bytes:,} bytes")
    if content_type.startswith("multipart/form-data"):
        return await _receive_uploads(request, settings, content_type)
    if content_type.split(";")[0].strip() == "application/json":
        return await _receive_paths(request, settings)
    raise UnsupportedMediaType("send files as multipart/form-data or paths as application/json")


async def _receive_uploads(request: Request, settings: Settings, content_type: str) -> Submission:
    folder = await run_in_threadpool(new_upload_dir, settings.api_upload_dir)
    limits = UploadLimits(settings.api_max_upload_bytes, settings.api_max_files_per_job)
    try:
        form = await MultipartUpload(folder, limits).receive(content_type, request.stream())
        if not form.sources:
            raise RequestError("no files: send them in the multipart field `files`")
        options = _validated(JobOptions, form.fields.get("options") or "{}", ("body", "options"))
    except BaseException:
        discard(folder)
        raise
    return Submission(form.sources, options, folder)


async def _receive_paths(request: Request, settings: Settings) -> Submission:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > JSON_BODY_LIMIT:
            raise TooLarge(f"a JSON body is at most {JSON_BODY_LIMIT:,} bytes")
    create = _validated(PathsJobCreate, bytes(body), ("body",))
    sources = await run_in_threadpool(resolve_paths, create.paths, settings.api_path_roots)
    if len(sources) > settings.api_max_files_per_job:
        raise TooLarge(
            f"a job takes at most {settings.api_max_files_per_job} files; the paths hold {len(sources)}"
        )
    if not sources:
        raise RequestError("the paths hold no files")
    return Submission(sources, create.options)


def _validated(model: type[M], raw: str | bytes, loc: tuple[str, ...]) -> M:
    """Parse JSON into a model; errors come back in the same shape as FastAPI's own validation."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError(_located(error, loc)) from error


def _located(error: ValidationError, loc: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each error's location under ``loc``. (Apart from ``_validated``: mypy cannot type a comprehension
    in a function over a constrained type variable.)"""
    return [{**e, "loc": (*loc, *e["loc"])} for e in error.errors(include_input=False, include_url=False)]


def _check_callback(options: JobOptions, settings: Settings, policy: WebhookPolicy) -> None:
    """422 now for a webhook that could never be sent, rather than a failed delivery later."""
    if not options.callback_url:
        return
    secret = settings.api_webhook_secret
    if not (secret and secret.get_secret_value()):
        raise RequestError("this server sends no webhooks: OCRQ_API_WEBHOOK_SECRET is not set")
    policy.check(str(options.callback_url))  # CallbackNotAllowed: 422 callback_not_allowed


@router.get("/jobs", response_model=JobsPage)
async def read_jobs(
    caller: CallerDep,
    sessions: SessionsDep,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> JobsPage:
    """Jobs, newest first, optionally only those with one status."""
    jobs, count = await run_in_threadpool(list_jobs, sessions, caller, status, limit, offset)
    return JobsPage(data=jobs, count=count, limit=limit, offset=offset)


@router.get("/jobs/{job_id}", response_model=JobDetail, responses=error_responses(404))
async def read_job(
    job_id: JobId,
    caller: CallerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    wait: Annotated[float, Query(ge=0, le=3600, description="Seconds to wait for the job to end")] = 0,
) -> JobDetail:
    """Status, counts, timings and per-document errors; with ``wait`` it answers as soon as the job ends."""
    deadline = time.monotonic() + min(wait, settings.api_long_poll_max_s)
    while not await run_in_threadpool(is_finished, sessions, caller, job_id) and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL_S)
    return await run_in_threadpool(job_detail, sessions, caller, job_id)


@router.delete("/jobs/{job_id}", response_model=JobDetail, responses=error_responses(404, 409))
async def cancel_job(job_id: JobId, caller: CallerDep, sessions: SessionsDep) -> JobDetail:
    """Cancel: queued pages are skipped, running ones finish and count."""
    finished = await run_in_threadpool(is_finished, sessions, caller, job_id)  # 404: unknown or not theirs
    if finished or not await run_in_threadpool(JobStore(sessions).cancel_job, job_id):
        raise JobAlreadyFinished(f"job {job_id} has finished already")
    return await run_in_threadpool(job_detail, sessions, caller, job_id)


@router.post(
    "/jobs/{job_id}/redo", status_code=202, response_model=RedoAccepted, responses=error_responses(404)
)
async def redo_job_pages(
    job_id: JobId,
    caller: CallerDep,
    sessions: SessionsDep,
    submitter: SubmitterDep,
    pages: Annotated[
        Literal["degraded"], Query(description="Which pages: those a fallback engine read")
    ] = "degraded",
) -> RedoAccepted:
    """Read the job's degraded pages again with its primary engine; each keeps its result until then.

    Only the job's own key (or an admin key) may; ``counts.pages.degraded`` of the job shows progress.
    """
    await run_in_threadpool(is_finished, sessions, caller, job_id)  # 404: unknown or not theirs
    plan = await run_in_threadpool(plan_redo, sessions, job_id)
    if plan.page_ids:
        await run_in_threadpool(submitter.redo, plan)
    return RedoAccepted(
        job_id=job_id, pages=len(plan.page_ids), primary_engine=plan.primary, links=job_links(job_id)
    )


@router.get("/jobs/{job_id}/documents", response_model=DocumentsPage, responses=error_responses(404))
async def read_documents(
    job_id: JobId, caller: CallerDep, sessions: SessionsDep, limit: Limit = 100, offset: Offset = 0
) -> DocumentsPage:
    """The job's documents in submission order."""
    documents, count = await run_in_threadpool(list_documents, sessions, caller, job_id, limit, offset)
    return DocumentsPage(data=documents, count=count, limit=limit, offset=offset)


@router.get(
    "/jobs/{job_id}/result",
    response_class=StreamingResponse,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}, **error_responses(404, 409)},
)
async def read_result(
    job_id: JobId,
    caller: CallerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    format: Annotated[ResultFormat, Query()] = "json",
    outputs: Annotated[
        str | None, Query(description="For zip: md,json,txt,pdf,alto,layout (default: OCRQ_OUTPUTS)")
    ] = None,
) -> StreamingResponse:
    """The finished job's results, streamed: ``md``, ``json``, ``jsonl`` (a document per line), ``txt``,
    or ``zip`` (every document's result files, as ``submit-batch --out`` writes them)."""
    if not await run_in_threadpool(is_finished, sessions, caller, job_id):
        raise JobNotFinished(f"job {job_id} has not finished; GET /v1/jobs/{job_id}?wait=60 waits for it")
    headers = {"Content-Disposition": f'attachment; filename="job-{job_id}.{format}"'}
    chosen = settings.model_copy(update={"outputs": output_formats(outputs)}) if outputs else settings
    body = await run_in_threadpool(stream_result, sessions, chosen, caller, job_id, format)
    return StreamingResponse(body, media_type=MEDIA_TYPES[format], headers=headers)
