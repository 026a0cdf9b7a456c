"""What browsers need from the server: CORS for other web pages (HEARTH_CORS_ORIGINS, off by
default) and the chat page's favicon."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.middleware.cors import CORSMiddleware

from hearth.settings import Settings

FAVICON_PATH = "/favicon.ico"
EXPOSED = ["Retry-After", "X-Hearth-Cost"]
"""Reply headers a page's script may read (Retry-After of a 429, what a public request cost)."""


def add_cors(app: FastAPI, settings: Settings) -> None:
    """Answer preflights and mark replies for HEARTH_CORS_ORIGINS; nothing at all when it is empty.
    Call it after the API key's middleware: the preflight carries no key, and a 401 must carry the
    CORS headers too, or the page's script cannot read why it was refused."""
    origins = settings.cors_origin_list
    if not origins:
        return
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE", "HEAD"],
                       allow_headers=["*"], expose_headers=EXPOSED, allow_credentials=False, max_age=600)


def add_favicon(app: FastAPI) -> None:
    icon = files("hearth.server").joinpath("static/favicon.svg").read_bytes()

    @app.get(FAVICON_PATH, include_in_schema=False)
    async def favicon() -> Response:
        return Response(icon, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})
