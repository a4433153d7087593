"""``/v1/documents/{id}`` and its pages (text, Markdown, layout cells, engine, timings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool

from ocrq.api.rest.deps import CallerDep, SessionsDep
from ocrq.api.rest.queries import get_document, get_page
from ocrq.api.rest.routes.common import MAX_ID, DocumentId, error_responses
from ocrq.api.rest.schemas import DocumentPublic, PagePublic

router = APIRouter(tags=["documents"], responses=error_responses(401, 404, 422))

PageNumber = Annotated[int, Path(ge=1, le=MAX_ID, description="1-based")]


@router.get("/documents/{document_id}", response_model=DocumentPublic)
async def read_document(document_id: DocumentId, caller: CallerDep, sessions: SessionsDep) -> DocumentPublic:
    """A document's status, type, page counts and error."""
    return await run_in_threadpool(get_document, sessions, caller, document_id)


@router.get("/documents/{document_id}/pages/{number}", response_model=PagePublic)
async def read_page(
    document_id: DocumentId, number: PageNumber, caller: CallerDep, sessions: SessionsDep
) -> PagePublic:
    """One page's text, Markdown, layout cells, engine and timings."""
    return await run_in_threadpool(get_page, sessions, caller, document_id, number)
