"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``.

Codes come from the error tree (:mod:`ocrq.errors`); this module only picks
the HTTP status. Unexpected exceptions are logged with their traceback and
answered with a bare ``internal`` error: no stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ocrq.errors import (
    BrokerUnavailable,
    InputError,
    JobAlreadyFinished,
    JobNotFinished,
    OcrqError,
    OutputError,
    Overloaded,
    PathNotAllowed,
    QuotaExceeded,
    RequestError,
    ResourceNotFound,
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from ocrq.redaction import mask_text

log = logging.getLogger("ocrq.api")

STATUS_BY_ERROR: tuple[tuple[type[OcrqError], int], ...] = (
    (Unauthorized, 401),
    (PathNotAllowed, 403),
    (ResourceNotFound, 404),
    (JobNotFinished, 409),
    (JobAlreadyFinished, 409),
    (OutputError, 409),
    (TooLarge, 413),
    (UnsupportedMediaType, 415),
    (QuotaExceeded, 429),
    (RequestError, 422),
    (InputError, 422),
    (Overloaded, 503),
    (BrokerUnavailable, 503),
)
"""Most specific first: the first class the error is an instance of decides."""

CODE_BY_STATUS = {
    401: Unauthorized.code,
    404: ResourceNotFound.code,
    405: "method_not_allowed",
    413: TooLarge.code,
    415: UnsupportedMediaType.code,
}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": mask_text(message), "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def status_for(error: OcrqError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


async def _ocrq_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, OcrqError)
    headers = None
    if isinstance(error, Overloaded | BrokerUnavailable | QuotaExceeded):
        headers = {"Retry-After": str(request.app.state.settings.api_retry_after_s)}
    if isinstance(error, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="ocrq", ApiKey'}
    return error_response(status_for(error), error.code, error.message, headers=headers)


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    """Where and why, without echoing the rejected input back."""
    assert isinstance(error, RequestValidationError)
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in error.errors()
    ]
    return error_response(422, RequestError.code, "the request is not valid", details)


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = CODE_BY_STATUS.get(error.status_code, RequestError.code if error.status_code < 500 else "internal")
    return error_response(error.status_code, code, str(error.detail), headers=error.headers)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return error_response(500, OcrqError.code, "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OcrqError, _ocrq_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
