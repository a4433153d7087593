"""Path and query types shared by the routers, and the documented error responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from ocrq.api.rest.schemas import ErrorResponse

MAX_ID = 2**31 - 1
"""Ids are 32-bit integers in the database; larger ones are refused before reaching it."""

JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
DocumentId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]

ERROR_DESCRIPTIONS = {
    401: "No API key, or an unknown or revoked one",
    403: "A path outside the allowed roots",
    404: "No such job, document or page, or one another key made",
    409: "The job has not finished (results) or has finished (cancel)",
    413: "The upload, or the job's page count, is over the limit",
    415: "Neither multipart/form-data nor application/json",
    422: "The request is not valid (also: a callback URL ocrq may not call)",
    429: "This key has too many pages waiting (OCRQ_API_KEY_MAX_QUEUED_PAGES); see Retry-After",
    503: "The backlog is over its limit; see Retry-After",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries in the one error shape, for the statuses a route can answer with."""
    return {s: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}
