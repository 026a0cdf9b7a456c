"""Ollama-compatible routes, so tools that speak Ollama's API work against hearth."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from hearth import __version__
from hearth.engine.events import Done, Token
from hearth.errors import HearthError, InvalidRequest
from hearth.public_swarm.sse import PublicCost
from hearth.server import ollama_models
from hearth.server.chat_tools import Plan, ollama_plan
from hearth.server.durations import keep_alive_seconds
from hearth.server.guard import check_request
from hearth.server.ollama_keep import Keeper
from hearth.server.ollama_models import check_num_ctx
from hearth.server.schemas import OllamaChatRequest, OllamaGenerateRequest
from hearth.server.streaming import (
    Events,
    client_of,
    collect,
    cost_headers,
    known_models,
    noting_departure,
    start,
    until_disconnect,
)
from hearth.server.structured import ollama_format_grammar
from hearth.server.tool_calls import Call, CallStream

if TYPE_CHECKING:
    from hearth.escalation.pool import Engines
    from hearth.settings import Settings



def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _final(done: Done, started: float, cost: PublicCost | None = None) -> dict[str, Any]:
    total_ns = int((time.perf_counter() - started) * 1e9)
    paid = {"cost_credits": cost.micro_credits, "served_by": "public", "workers": list(cost.workers)} if cost else {}
    return paid | {
        "done": True,
        "done_reason": done.finish_reason,
        "total_duration": total_ns,
        "prompt_eval_count": done.prompt_tokens,
        "eval_count": done.completion_tokens,
        "eval_duration": int(max(0.0, done.total_ms - done.ttft_ms) * 1e6),
    }


def _ndjson(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


async def _respond(request: Request, events: Events, model: str, piece: Callable[[str], dict[str, Any]],
                   stream: bool) -> Response:
    """Waiting for the engine and, without streaming, the whole reply, are cancelled when the
    client leaves: an abandoned request must not decode on to the end of the context."""
    started = time.perf_counter()
    _, events = await until_disconnect(request, start(events))
    if not stream:
        text, done, cost = await until_disconnect(request, collect(events))
        return JSONResponse({"model": model, "created_at": _now(), **piece(text), **_final(done, started, cost)},
                            headers=cost_headers(cost))

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(events), noting_departure("a streamed reply"):
            cost: PublicCost | None = None
            try:
                async for ev in events:
                    if isinstance(ev, Token):
                        yield _ndjson({"model": model, "created_at": _now(), **piece(ev.text), "done": False})
                    elif isinstance(ev, PublicCost):
                        cost = ev
                    elif isinstance(ev, Done):
                        yield _ndjson({"model": model, "created_at": _now(), **piece(""),
                                       **_final(ev, started, cost)})
            except HearthError as exc:
                yield _ndjson({"error": exc.message})

    return StreamingResponse(body(), media_type="application/x-ndjson")


async def _respond_calls(request: Request, events: Events, model: str, plan: Plan, stream: bool) -> Response:
    """A reply that may call tools: content streams as it comes unless it may be a call, which
    is held to the end and sent as message.tool_calls (arguments as objects), as Ollama does."""
    started = time.perf_counter()
    _, events = await until_disconnect(request, start(events))
    if not stream:
        text, done, cost = await until_disconnect(request, collect(events))
        found = plan.calls(text)
        message = ({"role": "assistant", "content": "", "tool_calls": [c.ollama() for c in found]} if found
                   else {"role": "assistant", "content": text})
        return JSONResponse({"model": model, "created_at": _now(), "message": message,
                             **_final(done, started, cost)}, headers=cost_headers(cost))
    calls = CallStream(plan.names, forced=False, parallel=plan.parallel)

    def line(delta: dict[str, Any]) -> bytes:
        found = [Call(d["function"]["name"], d["function"]["arguments"], d["id"]).ollama()
                 for d in delta.get("tool_calls", [])]
        message = {"role": "assistant", "content": delta.get("content", "")} | (
            {"tool_calls": found} if found else {})
        return _ndjson({"model": model, "created_at": _now(), "message": message, "done": False})

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(events), noting_departure("a streamed reply"):
            try:
                async for ev in events:
                    if isinstance(ev, Token):
                        for delta in calls.feed(ev.text):
                            yield line(delta)
                    elif isinstance(ev, Done):
                        for delta in calls.finish(ev.finish_reason)[0]:
                            yield line(delta)
                        yield _ndjson({"model": model, "created_at": _now(),
                                       "message": {"role": "assistant", "content": ""}, **_final(ev, started)})
            except HearthError as exc:
                yield _ndjson({"error": exc.message})

    return StreamingResponse(body(), media_type="application/x-ndjson")


async def _load_or_unload(keeper: Keeper, pool: Engines, model: str, keep_alive: float | None,
                          piece: dict[str, Any]) -> JSONResponse:
    """Ollama's idiom: a request with nothing to generate loads the model, or with keep_alive 0
    unloads it."""
    if keep_alive == 0:
        await keeper.unload(model)
        reason = "unload"
    else:
        await pool.load(model)
        await keeper.keep(model, keep_alive)
        reason = "load"
    return JSONResponse({"model": model, "created_at": _now(), **piece, "done": True, "done_reason": reason})


async def _kept(keeper: Keeper, model: str, keep_alive: float | None, response: Response) -> Response:
    """A request's keep_alive: 0 unloads the model once the reply is sent; another sets its deadline."""
    if keep_alive == 0:
        response.background = BackgroundTask(keeper.unload, model)
    else:
        await keeper.keep(model, keep_alive)
    return response


def add_routes(app: FastAPI, settings: Settings, pool: Engines) -> None:
    keeper = Keeper(pool)
    ollama_models.add_routes(app, settings, pool, keeper)

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": __version__}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        models = []
        for name, m in known_models(pool):
            # An embedded model not yet imported has no file in the store yet: no size or digest.
            when = datetime.fromtimestamp(m.pulled_at if m else 0, UTC).isoformat().replace("+00:00", "Z")
            models.append({"name": name, "model": name, "modified_at": when, "size": m.size if m else 0,
                           "digest": m.digest if m else "", "details": {"format": "gguf"}})
        return {"models": models}

    @app.post("/api/chat", response_model=None)
    async def chat(body: OllamaChatRequest, request: Request) -> Response:
        check_request(settings, body.texts(), body.options.stop or [])
        check_num_ctx(settings, body.options.num_ctx)
        keep_alive = keep_alive_seconds(body.keep_alive)
        if not body.messages:
            return await _load_or_unload(keeper, pool, body.model, keep_alive,
                                         {"message": {"role": "assistant", "content": ""}})
        plan = ollama_plan(body)
        fields = body.options.engine_fields() | {"messages": [m.for_template() for m in body.messages]}
        events = pool.run(body.model, "chat", client=client_of(request), **(fields | plan.fields()))
        if plan.names:
            return await _kept(keeper, body.model, keep_alive,
                               await _respond_calls(request, events, body.model, plan, body.stream))
        return await _kept(keeper, body.model, keep_alive, await _respond(
            request, events, body.model, lambda t: {"message": {"role": "assistant", "content": t}}, body.stream))

    @app.post("/api/generate", response_model=None)
    async def generate(body: OllamaGenerateRequest, request: Request) -> Response:
        check_request(settings, body.texts(), body.options.stop or [])
        check_num_ctx(settings, body.options.num_ctx)
        keep_alive = keep_alive_seconds(body.keep_alive)
        if not body.prompt and not body.suffix:
            return await _load_or_unload(keeper, pool, body.model, keep_alive, {"response": ""})
        grammar = ollama_format_grammar(body.format)
        fields = body.options.engine_fields() | ({"grammar": grammar} if grammar else {})
        if body.suffix is not None and body.system:
            raise InvalidRequest("`system` and `suffix` cannot be combined: a fill-in-the-middle prompt is the "
                                 "model's FIM tokens around the prompt and the suffix, with no chat template.",
                                 param="system")
        if body.suffix is not None:  # fill-in-the-middle, with the model's FIM tokens (not its template)
            events = pool.run(body.model, "complete", client=client_of(request), prompt=body.prompt,
                              suffix=body.suffix, **fields)
        elif body.raw:
            events = pool.run(body.model, "complete", client=client_of(request), prompt=body.prompt, **fields)
        else:
            messages = ([{"role": "system", "content": body.system}] if body.system else [])
            messages.append({"role": "user", "content": body.prompt})
            events = pool.run(body.model, "chat", client=client_of(request), messages=messages, **fields)
        return await _kept(keeper, body.model, keep_alive,
                           await _respond(request, events, body.model, lambda t: {"response": t}, body.stream))
