"""Ollama's model routes: /api/show, /api/ps, /api/embed, /api/embeddings, /api/pull (streamed
progress), /api/delete, /api/copy, and HEAD / (Ollama's "is the server up").

Pull, delete and copy change the store: like the control routes, they answer only this machine
unless the server has an API key (then the key decides)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearth.engine.templates import template_for
from hearth.errors import HearthError, InvalidRequest, ModelNotFound
from hearth.models.catalogue import lookup, validate_name
from hearth.models.facts import cached_facts
from hearth.models.gguf_header import read_header
from hearth.models.pull import pull, remove, resolve
from hearth.models.store import ModelStore
from hearth.server.control_routes import only_local
from hearth.server.durations import keep_alive_seconds
from hearth.server.embed_events import embed_all
from hearth.server.guard import check_request
from hearth.server.ollama_keep import Keeper, stored_name
from hearth.server.ollama_schemas import (
    CopyRequest,
    DeleteRequest,
    EmbeddingsRequest,
    EmbedOptions,
    EmbedRequest,
    PullRequest,
    ShowRequest,
)
from hearth.server.ollama_show import details, show_body
from hearth.server.streaming import client_of, until_disconnect
from hearth.server.vectors import shorten

if TYPE_CHECKING:
    from hearth.escalation.pool import Engines
    from hearth.settings import Settings


def iso(ts: float | datetime) -> str:
    when = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return when.isoformat().replace("+00:00", "Z")


def check_num_ctx(settings: Settings, num_ctx: int | None) -> None:
    """options.num_ctx: honoured when the server's window (HEARTH_N_CTX) holds it."""
    if num_ctx is not None and num_ctx > settings.n_ctx:
        raise InvalidRequest(f"options.num_ctx is {num_ctx}, but each request on this server gets a context "
                             f"window of {settings.n_ctx} tokens (HEARTH_N_CTX); ask for at most that, or "
                             "restart `hearth serve` with a larger HEARTH_N_CTX.", param="options.num_ctx")


def _stored(store: ModelStore, model: str) -> tuple[str, str]:
    """The stored name and path of `model` (an embedded model is imported now); ModelNotFound."""
    try:
        name, path = resolve(store, model)
    except InvalidRequest as exc:
        raise ModelNotFound(f"model {model!r} not found: {exc.message}", param="model") from exc
    return name, str(path)


def _show(store: ModelStore, settings: Settings, body: ShowRequest) -> dict[str, Any]:
    name, path = _stored(store, body.model_name)
    manifest = store.get(name)
    fields = read_header(store.model_path(name)).fields
    metadata = {k: v for k, v in fields.items() if isinstance(v, str)}
    return show_body(fields, cached_facts(store, name), path=path, n_ctx=settings.n_ctx,
                     stops=list(template_for(metadata).stop), verbose=body.verbose,
                     modified_at=iso(manifest.pulled_at if manifest else time.time()))


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


async def _pull_lines(store: ModelStore, spec: str) -> AsyncGenerator[dict[str, Any], None]:
    """Ollama's pull progress: pulling manifest, pulling <what> with total/completed, verifying,
    writing manifest, success; or {"error": ...}."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.1 or (total is not None and done >= total):
            last[0] = now
            line = {"status": f"pulling {spec}", "completed": done} | ({"total": total} if total else {})
            loop.call_soon_threadsafe(q.put_nowait, line)

    yield {"status": "pulling manifest"}
    task = asyncio.ensure_future(asyncio.to_thread(pull, store, spec, progress=progress))
    try:
        while not task.done() or not q.empty():
            getter = asyncio.ensure_future(q.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        manifest = task.result()
    except HearthError as exc:
        yield {"error": exc.message}
        return
    finally:
        if not task.done():
            task.cancel()  # the download thread finishes on its own; a later pull resumes it
    yield {"status": "verifying sha256 digest", "digest": f"sha256:{manifest.digest}"}
    yield {"status": "writing manifest"}
    yield {"status": "success"}


def _pull_spec(model: str) -> str:
    """What hearth's store pulls for an Ollama pull: a catalogue alias or an http(s) URL."""
    if model.startswith(("http://", "https://")):
        return model
    entry = lookup(model.removesuffix(":latest"))
    if entry is None:
        raise ModelNotFound(f"model {model!r} is not in hearth's catalogue (`hearth models --catalogue` lists "
                            "it); pull a GGUF by its http(s) URL instead.", param="model")
    return entry.alias


def add_routes(app: FastAPI, settings: Settings, pool: Engines, keeper: Keeper) -> None:
    local = Depends(only_local(settings))
    store = pool.store

    @app.head("/", include_in_schema=False)
    async def running() -> Response:
        return Response(status_code=200)

    @app.post("/api/show")
    async def show(body: ShowRequest) -> dict[str, Any]:
        return await asyncio.to_thread(_show, store, settings, body)

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        name = keeper.loaded()
        engine = pool.engine
        if name is None or engine is None:
            return {"models": []}
        manifest = store.get(name)
        facts = await asyncio.to_thread(cached_facts, store, name)
        return {"models": [{
            "name": name, "model": name, "size": manifest.size if manifest else facts.file_bytes,
            "digest": manifest.digest if manifest else "", "details": details(facts),
            "expires_at": iso(keeper.expires_at(name)), "size_vram": 0, "context_length": engine.n_ctx,
        }]}

    async def embed_texts(request: Request, model: str, inputs: list[str], truncate: bool,
                          options: EmbedOptions) -> tuple[list[list[float]], int]:
        check_num_ctx(settings, options.num_ctx)
        if len(inputs) > settings.max_embed_inputs:
            raise InvalidRequest(f"{len(inputs)} inputs; one request may embed at most "
                                 f"{settings.max_embed_inputs} (HEARTH_MAX_EMBED_INPUTS).", param="input")
        check_request(settings, inputs)
        if not inputs:  # Ollama's idiom: load the model, embed nothing
            await pool.load(model)
            return [], 0
        events = pool.run(model, "embed", client=client_of(request), input=inputs, truncate=truncate)
        return await until_disconnect(request, embed_all(events))

    @app.post("/api/embed")
    async def embed(body: EmbedRequest, request: Request) -> dict[str, Any]:
        started = time.perf_counter()
        inputs = body.inputs() if body.input != "" else []
        vectors, n = await embed_texts(request, body.model, inputs, body.truncate, body.options)
        await keeper.keep(body.model, keep_alive_seconds(body.keep_alive))
        return {"model": body.model, "embeddings": shorten(vectors, body.dimensions),
                "total_duration": int((time.perf_counter() - started) * 1e9), "load_duration": 0,
                "prompt_eval_count": n}

    @app.post("/api/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> dict[str, Any]:
        vectors, _ = await embed_texts(request, body.model, [body.prompt] if body.prompt else [], True,
                                       body.options)
        await keeper.keep(body.model, keep_alive_seconds(body.keep_alive))
        return {"embedding": vectors[0] if vectors else []}

    @app.post("/api/pull", dependencies=[local], response_model=None)
    async def pull_model(body: PullRequest) -> Response:
        spec = _pull_spec(body.model_name)
        if not body.stream:
            await asyncio.to_thread(pull, store, spec)
            return JSONResponse({"status": "success"})
        lines = _pull_lines(store, spec)

        async def body_lines() -> AsyncIterator[bytes]:
            async with contextlib.aclosing(lines):
                async for line in lines:
                    yield _line(line)

        return StreamingResponse(body_lines(), media_type="application/x-ndjson")

    @app.delete("/api/delete", dependencies=[local])
    async def delete(body: DeleteRequest) -> Response:
        try:
            await asyncio.to_thread(remove, store, stored_name(body.model_name))
        except (ModelNotFound, InvalidRequest) as exc:
            raise ModelNotFound(f"model {body.model_name!r} not found", param="model") from exc
        return Response(status_code=200)

    @app.post("/api/copy", dependencies=[local])
    async def copy(body: CopyRequest) -> Response:
        try:
            target = validate_name(stored_name(body.destination))
        except InvalidRequest as exc:
            raise InvalidRequest(f"destination: {exc.message}", param="destination") from exc
        name, _ = await asyncio.to_thread(_stored, store, body.source)
        manifest = store.get(name)
        if manifest is None:
            raise ModelNotFound(f"model {body.source!r} not found", param="source")
        await asyncio.to_thread(store.write_manifest, target, list(manifest.files), manifest.source)
        return Response(status_code=200)
