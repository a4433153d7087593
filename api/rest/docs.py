"""``/docs`` (Swagger UI) and ``/redoc`` served with their assets from this process: no CDN.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so on an air-gapped network they are
blank. The assets come from the ``fastapi-offline`` package (Swagger UI, ReDoc and FastAPI's favicon,
as files) and are served under :data:`ASSETS`; the pages are FastAPI's own templates pointed at them.
ReDoc's Google fonts and Swagger's online validator badge are switched off: both would reach out.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS, REDOC, OAUTH2_REDIRECT, ASSETS = "/docs", "/redoc", "/docs/oauth2-redirect", "/docs-assets"
DOCS_PAGES = (DOCS, REDOC, OAUTH2_REDIRECT)


def asset_folder() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> tuple[str, ...]:
    """Add the pages and their assets to an app made with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS, StaticFiles(directory=asset_folder()), name="docs-assets")
    title = f"{app.title} {app.version}"

    @app.get(DOCS, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title}: API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title}: API reference",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    return DOCS_PAGES
