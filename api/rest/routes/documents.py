"""``/v1/documents/{id}``: status, its result in any format, its pages and their layout pictures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ocrq.api.rest.deps import CallerDep, SessionsDep, SettingsDep
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
from ocrq.api.rest.queries import get_document, get_page, list_pages
from ocrq.api.rest.routes.common import MAX_ID, DocumentId, Limit, Offset, error_responses
from ocrq.api.rest.schemas import DocumentPublic, PagePublic, PagesPage

router = APIRouter(tags=["documents"], responses=error_responses(401, 404, 422))

PageNumber = Annotated[int, Path(ge=1, le=MAX_ID, description="1-based")]


@router.get("/documents/{document_id}", response_model=DocumentPublic)
async def read_document(document_id: DocumentId, caller: CallerDep, sessions: SessionsDep) -> DocumentPublic:
    """A document's status, type, page counts and error."""
    return await run_in_threadpool(get_document, sessions, caller, document_id)


@router.get("/documents/{document_id}/pages", response_model=PagesPage)
async def read_pages(
    document_id: DocumentId, caller: CallerDep, sessions: SessionsDep, limit: Limit = 100, offset: Offset = 0
) -> PagesPage:
    """A document's pages in order: status, engine, error and every engine attempt (text: one page)."""
    pages, count = await run_in_threadpool(list_pages, sessions, caller, document_id, limit, offset)
    return PagesPage(data=pages, count=count, limit=limit, offset=offset)


@router.get("/documents/{document_id}/pages/{number}", response_model=PagePublic)
async def read_page(
    document_id: DocumentId, number: PageNumber, caller: CallerDep, sessions: SessionsDep
) -> PagePublic:
    """One page's text, Markdown, layout cells, engine and timings."""
    return await run_in_threadpool(get_page, sessions, caller, document_id, number)


@router.get(
    "/documents/{document_id}/result",
    response_class=StreamingResponse,
    responses={200: {"content": {t: {} for t in DOCUMENT_MEDIA_TYPES.values()}}, **error_responses(409)},
)
async def read_document_result(
    document_id: DocumentId,
    caller: CallerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    format: Annotated[DocumentFormat, Query()] = "json",
) -> StreamingResponse:
    """The finished document as ``md``, ``json``, ``txt``, ``alto`` (ALTO XML v4) or ``pdf`` (searchable)."""
    name = await run_in_threadpool(finished_document, sessions, caller, document_id)
    headers = {"Content-Disposition": f'attachment; filename="{download_name(name, format)}"'}
    if format == "pdf":
        path = await run_in_threadpool(prepare_pdf, sessions, settings, document_id)
        body = stream_and_remove(path)
    else:
        body = stream_document(sessions, document_id, format)
    return StreamingResponse(body, media_type=DOCUMENT_MEDIA_TYPES[format], headers=headers)


@router.get(
    "/documents/{document_id}/pages/{number}/layout.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(409)},
)
async def read_page_layout(
    document_id: DocumentId, number: PageNumber, caller: CallerDep, sessions: SessionsDep
) -> Response:
    """The page drawn small with its layout cells: box, category colour and reading-order number."""
    png = await run_in_threadpool(page_layout_png, sessions, caller, document_id, number)
    return Response(png, media_type="image/png")
