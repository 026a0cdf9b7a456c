"""The OpenAPI schema (/openapi.json) declares the error responses the server really sends.

FastAPI declares a 422 for every route that validates input, which hearth never sends (its
handler answers 400 naming the field), and nothing for the errors middleware and routes raise.
`error_codes` is the rule (pure); `declare_errors` applies it to the generated schema once.
What sends each code:
    400  a malformed body, query or field (hearth.net.http_errors), a prompt over the limits
    401  a missing or wrong API key, when the server has one (app.ApiKeyMiddleware)
    402  --radius public: the model's price is above the ceiling
    403  control routes from another machine without the API key
    404  no such model (generation, /v1/models/{id}, control load)
    409  control: a load already under way
    413  a body over HEARTH_MAX_BODY_BYTES (guard.BodyGuard)
    421  a Host header that names something this server is not (net.http_guard)
    429  the queue is full, or too many event streams (Retry-After)
    500  the engine could not load or run the model
    502  --radius public: the swarm or a worker answered wrongly
    503  the engine crashed (the next request starts a fresh one), or no node or worker answered
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

EVERY = (401, 421)
BODY = (400, 413)
GENERATION = (402, 404, 429, 500, 502, 503)
CONTROL = (403, 404, 409, 500, 502, 503)
STREAMS = (429,)
CONTROL_PREFIX = "/hearth/control/"
EVENTS_SUFFIX = "/events"
OLLAMA_PREFIX = "/api/"

REASONS = {
    400: "The request is malformed or names a field hearth does not take; the message names the field.",
    401: "Missing or wrong API key (when the server has one): send 'Authorization: Bearer <key>'.",
    402: "--radius public: the model's price is above the ceiling.",
    403: "Control requests come from this machine only, unless the API key is sent.",
    404: "No such model or resource.",
    409: "A load of that model is already under way.",
    413: "The request body is over HEARTH_MAX_BODY_BYTES.",
    421: "The Host header names something this server is not.",
    429: "Too busy now: retry after Retry-After seconds.",
    500: "The engine could not load or run the model; the message says why.",
    502: "--radius public: the swarm or a worker answered wrongly.",
    503: "The engine crashed (the next request starts a fresh one), or no node or worker answered.",
}

OPENAI_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}
OLLAMA_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def error_codes(path: str, method: str, has_query: bool) -> list[int]:
    """The error statuses a route of this server can answer with."""
    codes = set(EVERY)
    if method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
        codes |= set(BODY)
        codes |= set(CONTROL if path.startswith(CONTROL_PREFIX) else GENERATION)
    if has_query:
        codes.add(400)
    if "{" in path:
        codes.add(404)
    if path.endswith(EVENTS_SUFFIX):
        codes |= set(STREAMS)
    return sorted(codes)


def _error_response(code: int, path: str) -> dict[str, Any]:
    shape = "OllamaError" if path.startswith(OLLAMA_PREFIX) else "OpenAIError"
    return {"description": REASONS[code],
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}}}


def with_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each operation's real error responses, and without FastAPI's 422."""
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            responses.pop("422", None)
            has_query = any(p.get("in") == "query" for p in op.get("parameters", []))
            for code in error_codes(path, method, has_query):
                responses.setdefault(str(code), _error_response(code, path))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update({"OpenAIError": OPENAI_ERROR, "OllamaError": OLLAMA_ERROR})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def declare_errors(app: FastAPI) -> None:
    """Make app.openapi() (and /openapi.json) declare the real error responses."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
