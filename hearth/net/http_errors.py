"""OpenAI-shaped error bodies for every hearth HTTP surface (endpoint and node control API).

Built from HearthError's typed fields, never by parsing exception text; no traceback leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth.errors import HearthError, InvalidRequest

log = logging.getLogger("hearth.http")


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


OLLAMA_PREFIX = "/api/"
"""Routes that speak Ollama's API answer errors in its shape: {"error": "..."}."""


def body_for(exc: HearthError, path: str = "") -> dict[str, Any]:
    """The route's own error shape: Ollama's under /api, OpenAI's everywhere else."""
    if path.startswith(OLLAMA_PREFIX) or path == OLLAMA_PREFIX.rstrip("/"):
        return {"error": exc.message}
    return error_body(exc.message, exc.error_type, exc.code, exc.param)


def hearth_error_response(exc: HearthError, path: str = "") -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(body_for(exc, path), status_code=exc.http_status, headers=headers)


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _field_path(loc: tuple[int | str, ...]) -> str:
    """'messages.0.content', without 'body' and the union-member tags pydantic adds to a path
    ('function-after[_unicode(), str]', 'list[TextPart]')."""
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(p for p in parts if "[" not in p and p not in _TYPE_TAGS)


def _unknown_field(path: str) -> str:
    return f"'{path}' is not a field of this request; remove it."


def validation_message(exc: RequestValidationError,
                       unknown_field: Callable[[str], str] = _unknown_field) -> tuple[str, str | None]:
    """The message and field of a 400; a field the request does not take (extra="forbid") is
    named first, with `unknown_field`'s words, as it is what a client most needs to change."""
    errors = exc.errors()
    if not errors:
        return "The request body is not valid.", None
    extra = [e for e in errors if e.get("type") == "extra_forbidden"]
    # A value our validators refused says more than "not a string" from another union member.
    first = extra[0] if extra else next((e for e in errors if e.get("type") == "value_error"), errors[0])
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None
    param = _field_path(tuple(first.get("loc", ())))
    if not param and first.get("type") == "value_error":  # a rule over several fields: its own words
        return f"Invalid request: {str(first.get('msg', '')).removeprefix('Value error, ')}.", None
    if not param:
        return "The request body must be a JSON object.", None
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if extra:
        return f"{unknown_field(param).rstrip('.')}{more}.", param
    return f"Invalid request at '{param}': {first.get('msg', 'invalid value')}{more}.", param


def install_error_handlers(app: FastAPI, unknown_field: Callable[[str], str] = _unknown_field) -> None:
    """`unknown_field` words the refusal of a field a request does not take, given its path."""
    @app.exception_handler(HearthError)
    async def on_hearth_error(request: Request, exc: HearthError) -> JSONResponse:
        return hearth_error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc, unknown_field)
        return hearth_error_response(InvalidRequest(message, param=param), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if request.url.path.startswith(OLLAMA_PREFIX):
            return JSONResponse({"error": str(exc.detail)}, exc.status_code)
        code = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error", code), exc.status_code)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return hearth_error_response(HearthError("Internal error in hearth; see the log."), request.url.path)
