"""The submit form: what the server offers, and a filled-in form turned into a job.

The form is read by the REST API's own machinery (streamed multipart under the same size cap,
the same options model, backlog, page cap and per-key quota), so a job made here is a job made
through ``POST /v1/jobs``: same checks, same owner, same limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from ocrq.api.rest.admission import check_backlog, check_page_cap
from ocrq.api.rest.routes.jobs import Admission, Submission
from ocrq.api.rest.schemas import JobOptions
from ocrq.api.rest.uploads import MultipartUpload, UploadLimits, discard, new_upload_dir, resolve_paths
from ocrq.api.web.session import WebSession, check_csrf
from ocrq.errors import ConfigurationError, RequestError, TooLarge
from ocrq.schemas import PromptMode
from ocrq.settings import Settings

EMPTY_PART_NAME = re.compile(r"(\d+-)?upload")


@dataclass(frozen=True, slots=True)
class Offer:
    """The choices the submit form shows, all from this server's settings and model registry."""

    engines: list[str]
    models: list[str]
    default_model: str
    prompt_modes: list[str]
    default_prompt_mode: str
    dpi: int
    path_roots: list[str]
    max_upload_bytes: int
    max_files: int


def offer(settings: Settings) -> Offer:
    return Offer(
        engines=list(settings.engines),
        models=_vllm_models(settings),
        default_model=settings.vllm_model,
        prompt_modes=[mode.value for mode in PromptMode],
        default_prompt_mode=settings.prompt_mode.value,
        dpi=settings.render_dpi,
        path_roots=[str(root) for root in settings.api_path_roots],
        max_upload_bytes=settings.api_max_upload_bytes,
        max_files=settings.api_max_files_per_job,
    )


def _vllm_models(settings: Settings) -> list[str]:
    from ocrq.worker.models.registry import bundled_registry

    try:
        keys = [spec.key for spec in bundled_registry().for_backend("vllm")]
    except ConfigurationError:
        keys = []
    return sorted({*keys, *settings.vllm_model_urls, settings.vllm_model})


def options_from_form(fields: dict[str, Any], settings: Settings) -> JobOptions:
    """The form's fields as JobOptions; anything left at the server's default is left out."""
    engines = [name for name in settings.engines if fields.get(f"engine_{name}")]
    if not engines:
        raise RequestError("choose at least one engine")
    chosen: dict[str, Any] = {"priority": fields.get("priority") or 5, "force": bool(fields.get("force"))}
    if engines != list(settings.engines):
        chosen["engines"] = engines
    if (model := str(fields.get("model") or "")) and model != settings.vllm_model:
        chosen["model"] = model
    if (mode := str(fields.get("prompt_mode") or "")) and mode != settings.prompt_mode.value:
        chosen["prompt_mode"] = mode
    if (dpi := str(fields.get("dpi") or "").strip()) and dpi != str(settings.render_dpi):
        chosen["dpi"] = dpi
    try:
        return JobOptions.model_validate(chosen)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise RequestError(f"the options are not valid: {problems}") from error


async def receive_upload_form(request: Request, settings: Settings, session: WebSession) -> Submission:
    """Files streamed to disk under the cap; the CSRF token checked before anything is kept."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.api_max_upload_bytes:
        raise TooLarge(f"the upload exceeds {settings.api_max_upload_bytes:,} bytes")
    folder = await run_in_threadpool(new_upload_dir, settings.api_upload_dir)
    limits = UploadLimits(settings.api_max_upload_bytes, settings.api_max_files_per_job)
    try:
        form = await MultipartUpload(folder, limits).receive(
            request.headers["content-type"], request.stream()
        )
        check_csrf(session.csrf, form.fields.get("csrf"))
        sources = [source for source in form.sources if not _empty_choice(source.path)]
        if not sources:
            raise RequestError("choose some files or a folder to upload")
        options = options_from_form(form.fields, settings)
    except BaseException:
        discard(folder)
        raise
    return Submission(sources, options, folder)


def _empty_choice(path: Path) -> bool:
    """A file input left empty still sends a part with no file name and no bytes (stored as 'upload')."""
    return EMPTY_PART_NAME.fullmatch(path.name) is not None and path.stat().st_size == 0


def paths_submission(fields: dict[str, Any], settings: Settings) -> Submission:
    raw = [line.strip() for line in str(fields.get("paths") or "").splitlines() if line.strip()]
    if not raw:
        raise RequestError("name at least one path, one per line")
    sources = resolve_paths(raw, settings.api_path_roots)
    if not sources:
        raise RequestError("the paths hold no files")
    if len(sources) > settings.api_max_files_per_job:
        raise TooLarge(
            f"a job takes at most {settings.api_max_files_per_job} files; the paths hold {len(sources)}"
        )
    return Submission(sources, options_from_form(fields, settings))


def admit(request: Request, submission: Submission, session: WebSession) -> int:
    """Backlog, page cap and quota as for the REST API; the job belongs to the signed-in key."""
    state, settings = request.app.state, request.app.state.settings
    try:
        check_backlog(state.sessions, settings)
        pages = check_page_cap(submission.sources, settings)
        return Admission(state.submitter, state.quota, settings).submit(submission, session.caller, pages)
    except BaseException:
        discard(submission.folder)
        raise
