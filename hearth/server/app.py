"""The HTTP endpoint: OpenAI-compatible routes, Ollama-compatible routes and a chat page.

Errors leave as OpenAI-shaped JSON built from HearthError's typed fields; nothing here parses
exception text, and no traceback ever reaches a client.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth import __version__
from hearth.engine.events import Done, Token
from hearth.errors import HearthError, InvalidRequest, ModelNotFound, Unauthorized
from hearth.escalation.pool import Engines
from hearth.net.http_errors import error_body, hearth_error_response, install_error_handlers
from hearth.node_api.feed import Feed
from hearth.public_swarm.sse import PublicCost
from hearth.server import browser, chat_tools, control_routes, ollama, status_routes
from hearth.server.embed_events import embed_all
from hearth.server.fields import refusal
from hearth.server.guard import BodyGuard, check_request
from hearth.server.logprob_shapes import chat_content, completion_logprobs
from hearth.server.openapi import declare_errors
from hearth.server.responses import add_routes as add_responses_routes
from hearth.server.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from hearth.server.streaming import (
    ClientGone,
    Events,
    client_of,
    collect,
    cost_headers,
    known_models,
    noting_departure,
    public_part,
    start,
    until_disconnect,
)
from hearth.server.vectors import shorten
from hearth.settings import Settings

PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})
log = logging.getLogger("hearth.http")


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


class ApiKeyMiddleware:
    """Requires 'Authorization: Bearer <key>' on every route but the page itself.

    Plain ASGI rather than BaseHTTPMiddleware, which would copy every streamed chunk through an
    extra task and memory stream.
    """

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            given = Headers(scope=scope).get("authorization", "")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), self.key):
                response = hearth_error_response(Unauthorized(
                    "Missing or wrong API key: send 'Authorization: Bearer <key>'."
                ), scope["path"])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings, pool: Engines, feed: Feed | None = None) -> FastAPI:
    """The app over `pool`; `feed` is the process's event feed (default: the pool's own)."""
    events = feed if feed is not None else pool.feed

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            events.close()  # event streams end, rather than hold the shutdown
            await pool.close()

    app = FastAPI(title="hearth", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)

    app.add_middleware(BodyGuard, limit=settings.max_body_bytes)
    if settings.api_key is not None:  # outermost: nobody without the key gets a body read
        app.add_middleware(ApiKeyMiddleware, key=settings.api_key.get_secret_value())
    browser.add_cors(app, settings)  # outside the key: preflights carry none

    install_error_handlers(app, refusal)
    # hearth dash's actions; the engines are steerable from here on
    pool = control_routes.add_routes(app, settings, pool, events.publish)

    @app.exception_handler(ClientGone)
    async def on_client_gone(request: Request, _: ClientGone) -> Response:
        client = request.client.host if request.client else "a client"
        log.info("%s left before its reply to %s; the request was cancelled", client, request.url.path)
        return Response(status_code=499)  # nobody reads it; nginx's code for "client closed request"

    def model_name(requested: str | None) -> str:
        return (requested or settings.default_model).strip()

    # -- pages and status ------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        html = files("hearth.server").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{DEFAULT_MODEL}}", settings.default_model))

    browser.add_favicon(app)
    app.state.feed = events  # the control routes publish on it too
    status_routes.add_routes(app, settings, pool, events)

    # -- OpenAI ---------------------------------------------------------------------------
    def model_cards() -> list[dict[str, Any]]:
        return [{"id": n, "object": "model", "owned_by": "hearth", "created": int(m.pulled_at) if m else 0}
                for n, m in known_models(pool)]

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": model_cards()}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        for card in model_cards():
            if card["id"] == model_id:
                return card
        raise ModelNotFound(f"Model {model_id!r} does not exist; GET /v1/models lists them.")

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        model = model_name(body.model)
        check_request(settings, body.texts(), body.stops())
        plan = chat_tools.openai_plan(body)
        messages = [m.for_template() for m in body.messages]
        fields = body.engine_fields() | body.engine_logprobs() | {"messages": messages} | plan.fields()
        events = pool.run(model, "chat", client=client_of(request), **fields)
        first, events = await until_disconnect(request, start(events))
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            if plan.names:
                return chat_tools.openai_stream(events, base, plan, include_usage)
            opening = sse(base | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                               "finish_reason": None}]})

            def chat_choice(text: str | None, finish: str | None) -> dict[str, Any]:
                delta = {"content": text} if text is not None else {}
                return {"index": 0, "delta": delta, "finish_reason": finish}

            logprobs = (lambda t: {"content": chat_content([t])}) if body.logprobs else None
            return sse_response(events, base, chat_choice, include_usage, opening, logprobs)
        tokens: list[Token] = []
        text, done, cost = await until_disconnect(request, collect(events, tokens))
        message, finish = chat_tools.openai_message(text, done.finish_reason, plan)
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message,
                         "logprobs": {"content": chat_content(tokens)} if body.logprobs else None,
                         "finish_reason": finish}],
            "usage": _usage(done, cost), "hearth": _timings(done) | public_part(cost),
        }, headers=cost_headers(cost))

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        model = model_name(body.model)
        check_request(settings, body.texts() + [body.suffix or ""], body.stops())
        fields = body.engine_fields() | body.engine_logprobs() | {"prompt": body.prompt_text()} | body.fim_fields()
        events = pool.run(model, "complete", client=client_of(request), **fields)
        first, events = await until_disconnect(request, start(events))
        rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        base = {"id": rid, "object": "text_completion", "created": created, "model": model}
        echoed = body.prompt_text() if body.echo else ""
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)

            def text_choice(text: str | None, finish: str | None) -> dict[str, Any]:
                return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

            sent = [0]

            def text_logprobs(t: Token) -> dict[str, Any]:
                shaped = completion_logprobs([t], sent[0])
                sent[0] += len(t.text)
                return shaped

            opening = sse(base | {"choices": [text_choice(echoed, None)]}) if echoed else None
            return sse_response(events, base, text_choice, include_usage, opening,
                                text_logprobs if body.logprobs is not None else None)
        tokens: list[Token] = []
        text, done, cost = await until_disconnect(request, collect(events, tokens))
        return JSONResponse(base | {
            "object": "text_completion",
            "choices": [{"index": 0, "text": echoed + text,
                         "logprobs": completion_logprobs(tokens) if body.logprobs is not None else None,
                         "finish_reason": done.finish_reason}],
            "usage": _usage(done, cost), "hearth": _timings(done) | public_part(cost),
        }, headers=cost_headers(cost))

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
        model = model_name(body.model)
        inputs = body.inputs()
        if len(inputs) > settings.max_embed_inputs:
            raise InvalidRequest(f"{len(inputs)} inputs; one request may embed at most "
                                 f"{settings.max_embed_inputs} (HEARTH_MAX_EMBED_INPUTS).", param="input")
        check_request(settings, body.texts())
        events = pool.run(model, "embed", client=client_of(request), input=inputs)
        vectors, n = await until_disconnect(request, embed_all(events))
        vectors = shorten(vectors, body.dimensions)
        encode = _base64_floats if body.encoding_format == "base64" else list
        return {
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": n, "total_tokens": n},
        }

    add_responses_routes(app, settings.default_model, chat_completions)
    ollama.add_routes(app, settings, pool)
    declare_errors(app)
    return app


def sse_response(events: Events, base: dict[str, Any],
                 choice: Callable[[str | None, str | None], dict[str, Any]],
                 include_usage: bool, opening: bytes | None = None,
                 logprobs: Callable[[Token], dict[str, Any]] | None = None) -> StreamingResponse:
    """Server-sent events in OpenAI's chunk format, ending with [DONE]. A reply the public swarm
    served always ends with a usage chunk carrying its cost (the head went out before it was known).

    An error after the stream began is sent in-band as {"error": ...}, which the official
    clients raise. Closing the response (client gone) closes the events, which cancels the
    generation in the engine.
    """

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(events), noting_departure("a streamed reply"):
            if opening is not None:
                yield opening
            cost: PublicCost | None = None
            try:
                async for ev in events:
                    if isinstance(ev, Token):
                        chunk = choice(ev.text, None)
                        if logprobs is not None:  # a chunk's own tokens (`logprobs`: the request asked)
                            chunk["logprobs"] = logprobs(ev)
                        yield sse(base | {"choices": [chunk]})
                    elif isinstance(ev, PublicCost):
                        cost = ev
                    elif isinstance(ev, Done):
                        yield sse(base | {"choices": [choice(None, ev.finish_reason)]})
                        if include_usage or cost is not None:
                            yield sse(base | {"choices": [], "usage": _usage(ev, cost),
                                              "hearth": public_part(cost)})
            except HearthError as exc:
                yield sse(error_body(exc.message, exc.error_type, exc.code))
            yield sse("[DONE]")

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _base64_floats(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _usage(done: Done, cost: PublicCost | None = None) -> dict[str, Any]:
    p, c = done.prompt_tokens, done.completion_tokens
    paid = {"cost_credits": cost.micro_credits, "price": cost.price} if cost is not None else {}
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": done.cached_tokens}} | paid


def _timings(done: Done) -> dict[str, Any]:
    return {"ttft_ms": done.ttft_ms, "decode_tokens_per_s": done.decode_tokens_per_s}
