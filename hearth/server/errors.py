"""OpenAI-shaped error bodies for every hearth HTTP surface (endpoint and node control API).

Built from HearthError's typed fields, never by parsing exception text; no traceback leaves.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth.errors import HearthError

log = logging.getLogger("hearth.http")


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def hearth_error_response(exc: HearthError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.error_type, exc.code, exc.param), status_code=exc.http_status)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "The request body is not valid.", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None
    if not loc:
        return "The request body must be a JSON object (send Content-Type: application/json).", None
    param = ".".join(loc)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"Invalid request at '{param}': {first.get('msg', 'invalid value')}{more}.", param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HearthError)
    async def on_hearth_error(_: Request, exc: HearthError) -> JSONResponse:
        return hearth_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc)
        return JSONResponse(error_body(message, "invalid_request_error", "invalid_request", param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error", code), exc.status_code)

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body("Internal error in hearth; see the log.", "server_error", "internal_error"), 500)
