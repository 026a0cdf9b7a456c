"""Ollama-compatible routes, so tools that speak Ollama's API work against hearth."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearth import __version__
from hearth.errors import EngineFailed, HearthError
from hearth.server.schemas import OllamaChatRequest, OllamaGenerateRequest

if TYPE_CHECKING:
    from hearth.orchestrator.engines import EnginePool
    from hearth.settings import Settings

Events = AsyncGenerator[dict[str, Any], None]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _final(done: dict[str, Any], started: float) -> dict[str, Any]:
    total_ns = int((time.perf_counter() - started) * 1e9)
    return {
        "done": True,
        "done_reason": done["finish_reason"],
        "total_duration": total_ns,
        "prompt_eval_count": done["prompt_tokens"],
        "eval_count": done["completion_tokens"],
        "eval_duration": int(max(0.0, float(done["total_ms"]) - float(done["ttft_ms"])) * 1e6),
    }


def _ndjson(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


async def _respond(events: Events, model: str, piece: Callable[[str], dict[str, Any]],
                   stream: bool) -> Response:
    from hearth.server.app import start

    started = time.perf_counter()
    _, events = await start(events)
    if not stream:
        parts: list[str] = []
        async with contextlib.aclosing(events):
            async for ev in events:
                if ev["event"] == "token":
                    parts.append(ev["text"])
                elif ev["event"] == "done":
                    return JSONResponse({"model": model, "created_at": _now(), **piece("".join(parts)),
                                         **_final(ev, started)})
        raise EngineFailed("The engine ended the request without finishing it.")

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(events):
            try:
                async for ev in events:
                    if ev["event"] == "token":
                        yield _ndjson({"model": model, "created_at": _now(), **piece(ev["text"]), "done": False})
                    elif ev["event"] == "done":
                        yield _ndjson({"model": model, "created_at": _now(), **piece(""), **_final(ev, started)})
            except HearthError as exc:
                yield _ndjson({"error": exc.message})

    return StreamingResponse(body(), media_type="application/x-ndjson")


def add_routes(app: FastAPI, settings: Settings, pool: EnginePool) -> None:
    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": __version__}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        models = []
        for m in pool.store.all():
            when = datetime.fromtimestamp(m.pulled_at, UTC).isoformat().replace("+00:00", "Z")
            models.append({"name": m.name, "model": m.name, "modified_at": when, "size": m.size,
                           "digest": m.digest, "details": {"format": "gguf"}})
        return {"models": models}

    @app.post("/api/chat", response_model=None)
    async def chat(body: OllamaChatRequest, request: Request) -> Response:
        fields = body.options.engine_fields() | {"messages": [m.model_dump() for m in body.messages]}
        return await _respond(pool.run(body.model, "chat", **fields), body.model,
                              lambda t: {"message": {"role": "assistant", "content": t}}, body.stream)

    @app.post("/api/generate", response_model=None)
    async def generate(body: OllamaGenerateRequest, request: Request) -> Response:
        fields = body.options.engine_fields()
        if body.raw:
            events = pool.run(body.model, "complete", prompt=body.prompt, **fields)
        else:
            messages = ([{"role": "system", "content": body.system}] if body.system else [])
            messages.append({"role": "user", "content": body.prompt})
            events = pool.run(body.model, "chat", messages=messages, **fields)
        return await _respond(events, body.model, lambda t: {"response": t}, body.stream)
