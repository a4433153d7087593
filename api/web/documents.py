"""The page's routes for looking and taking: page viewer, page pictures, downloads, system panel.

Downloads are the REST API's own handlers, called with the signed-in caller: the same formats,
the same file names, the same 404 for another tenant's job or document, whatever they become.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from ocrq.api.rest.document_results import DocumentFormat
from ocrq.api.rest.routes import documents as rest_documents
from ocrq.api.rest.routes import jobs as rest_jobs
from ocrq.api.rest.routes.common import MAX_ID, DocumentId, JobId
from ocrq.api.rest.schemas import ResultFormat
from ocrq.api.web.markdown import markdown_html
from ocrq.api.web.pages import SessionDep
from ocrq.api.web.rendering import WebRoute, page
from ocrq.api.web.system import CHART_HEIGHT, CHART_WIDTH, system_view
from ocrq.api.web.viewer import page_picture_jpeg, page_view

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
    return await rest_documents.read_page_layout(
        document_id, number, session.caller, request.app.state.sessions
    )


@router.get("/documents/{document_id}/download")
async def document_download(
    request: Request,
    document_id: DocumentId,
    session: SessionDep,
    format: Annotated[DocumentFormat, Query()] = "md",
) -> Response:
    """Exactly ``GET /v1/documents/{id}/result`` for the signed-in caller."""
    state = request.app.state
    return await rest_documents.read_document_result(
        document_id, session.caller, state.sessions, state.settings, format
    )


@router.get("/jobs/{job_id}/download")
async def job_download(
    request: Request,
    job_id: JobId,
    session: SessionDep,
    format: Annotated[ResultFormat, Query()] = "zip",
    outputs: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """Exactly ``GET /v1/jobs/{id}/result``; for ``zip``, the formats ticked in the form."""
    state = request.app.state
    chosen = ",".join(outputs) if outputs else None
    return await rest_jobs.read_result(job_id, session.caller, state.sessions, state.settings, format, chosen)


@router.get("/system")
async def system_page(request: Request, session: SessionDep) -> Response:
    state = request.app.state
    celery = getattr(state.submitter, "celery", None)
    view = await run_in_threadpool(system_view, state.sessions, state.settings, session.caller, celery)
    return page(
        request, "system.html", session=session, view=view, chart_width=CHART_WIDTH, chart_height=CHART_HEIGHT
    )
