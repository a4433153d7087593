"""Templates, and the route class that turns errors into pages a person can read.

The REST API answers errors as JSON envelopes; the page's routes answer the same errors as HTML
with the same status and message, and send a visitor without a session to the sign-in form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from ocrq import __version__
from ocrq.api.rest.errors import status_for
from ocrq.errors import NotSignedIn, OcrqError
from ocrq.redaction import mask_text

log = logging.getLogger("ocrq.api.web")

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["version"] = __version__


def duration(seconds: float) -> str:
    """As the script writes it, so a live update does not change the format."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def age(iso: str) -> str:
    """How long ago, from an ISO time: what a person scanning a job list wants to know."""
    moment = datetime.fromisoformat(iso)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - moment).total_seconds()
    return f"{duration(seconds)} ago" if seconds >= 1 else "just now"


templates.env.filters["duration"] = duration
templates.env.filters["age"] = age


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"  # tenants' data, like /v1
    return response


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    session = getattr(request.state, "web_session", None)
    return page(request, "error.html", status, code=code, message=mask_text(message), session=session)


class WebRoute(APIRoute):
    """An APIRoute whose errors become pages (or a redirect to sign in) instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except NotSignedIn:
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                return RedirectResponse(f"/login?next={target}", status_code=303)
            except OcrqError as error:
                return error_page(request, status_for(error), error.code, error.message)
            except RequestValidationError as error:
                return error_page(request, 422, "invalid_request", _validation_message(error))

        return handle


def _validation_message(error: RequestValidationError) -> str:
    parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in error.errors()]
    return "the request is not valid: " + "; ".join(parts)
