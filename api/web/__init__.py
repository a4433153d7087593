"""The web page for people, served by the REST app under ``/`` (the API stays under ``/v1``).

Server-rendered Jinja2 templates, one stylesheet and one small script, all shipped in the
package: no CDN, no build step. Pages work without the script; it adds live progress (server-sent
events), the click-a-cell panel without a reload and a size check before an upload starts.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ocrq.api.web.rendering import HERE
from ocrq.api.web.session import SessionSigner


def install_web(app: FastAPI) -> None:
    """Routes, static files and the session signer; call after the REST routers."""
    from ocrq.api.web import documents, pages

    app.state.web_signer = SessionSigner(app.state.settings)
    app.include_router(pages.router)
    app.include_router(documents.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="web-static")
