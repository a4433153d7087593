"""The page's routes for looking and taking: page viewer, page pictures, downloads, system panel.

Downloads stream through the REST API's own producers, with the signed-in caller: the same
formats, the same file names, the same 404 for another tenant's job or document.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ocrq.api.rest.document_results import (
    DOCUMENT_MEDIA_TYPES,
    DocumentFormat,
    download_name,
    finished_document,
    page_layout_png,
    prepare_pdf,
    stream_and_remove,
    stream_document,
)
from ocrq.api.rest.queries import is_finished
from ocrq.api.rest.results import MEDIA_TYPES, output_formats, stream_result
from ocrq.api.rest.routes.common import MAX_ID, DocumentId, JobId
from ocrq.api.rest.schemas import ResultFormat
from ocrq.api.web.markdown import markdown_html
from ocrq.api.web.pages import SessionDep
from ocrq.api.web.rendering import WebRoute, page
from ocrq.api.web.system import CHART_HEIGHT, CHART_WIDTH, system_view
from ocrq.api.web.viewer import page_picture_jpeg, page_view
from ocrq.errors import JobNotFinished

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PageNumber = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/documents/{document_id}/pages/{number}")
async def page_viewer(
    request: Request,
    document_id: DocumentId,
    number: PageNumber,
    session: SessionDep,
    cell: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The picture with its cells; ``?cell=N`` shows that cell's text (the no-script path)."""
    view = await run_in_threadpool(page_view, request.app.state.sessions, session.caller, document_id, number)
    selected = next((c for c in view.cells if c.order == cell), None)
    return page(
        request,
        "page.html",
        session=session,
        view=view,
        selected=selected,
        markdown=markdown_html(view.page.markdown),
        categories=sorted({(c.category, c.css) for c in view.cells}),
    )


@router.get("/documents/{document_id}/pages/{number}/picture.jpg")
async def page_picture(
    request: Request, document_id: DocumentId, number: PageNumber, session: SessionDep
) -> Response:
    jpeg = await run_in_threadpool(
        page_picture_jpeg, request.app.state.sessions, session.caller, document_id, number
    )
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


@router.get("/documents/{document_id}/pages/{number}/layout.png")
async def layout_picture(
    request: Request, document_id: DocumentId, number: PageNumber, session: SessionDep
) -> Response:
    """The server's own layout drawing (as ``/v1/.../layout.png``), to keep or compare."""
    png = await run_in_threadpool(
        page_layout_png, request.app.state.sessions, session.caller, document_id, number
    )
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/documents/{document_id}/download")
async def document_download(
    request: Request,
    document_id: DocumentId,
    session: SessionDep,
    format: Annotated[DocumentFormat, Query()] = "md",
) -> Response:
    state = request.app.state
    name = await run_in_threadpool(finished_document, state.sessions, session.caller, document_id)
    headers = {"Content-Disposition": f'attachment; filename="{download_name(name, format)}"'}
    if format == "pdf":
        path = await run_in_threadpool(prepare_pdf, state.sessions, state.settings, document_id)
        body = stream_and_remove(path)
    else:
        body = stream_document(state.sessions, document_id, format)
    return StreamingResponse(body, media_type=DOCUMENT_MEDIA_TYPES[format], headers=headers)


@router.get("/jobs/{job_id}/download")
async def job_download(
    request: Request,
    job_id: JobId,
    session: SessionDep,
    format: Annotated[ResultFormat, Query()] = "zip",
    outputs: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """The job's results; for ``zip``, the formats ticked in the form (default: the server's)."""
    state = request.app.state
    if not await run_in_threadpool(is_finished, state.sessions, session.caller, job_id):
        raise JobNotFinished(f"job {job_id} has not finished; its results can be downloaded once it has")
    settings = state.settings
    if format == "zip" and outputs:
        settings = settings.model_copy(update={"outputs": output_formats(",".join(outputs))})
    headers = {"Content-Disposition": f'attachment; filename="job-{job_id}.{format}"'}
    body = await run_in_threadpool(stream_result, state.sessions, settings, session.caller, job_id, format)
    return StreamingResponse(body, media_type=MEDIA_TYPES[format], headers=headers)


@router.get("/system")
async def system_page(request: Request, session: SessionDep) -> Response:
    state = request.app.state
    celery = getattr(state.submitter, "celery", None)
    view = await run_in_threadpool(system_view, state.sessions, state.settings, session.caller, celery)
    return page(
        request, "system.html", session=session, view=view, chart_width=CHART_WIDTH, chart_height=CHART_HEIGHT
    )
