"""The requester routes of C1: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`.

A signed request (hearth's scheme, as CoordinatorClient and the requester sign) is billed to the
signer's credits; an unsigned one uses the client address's free allowance (`FreeTierClosed`, 401,
where this coordinator gives none). `X-Hearth-Max-Price` is the requester's ceiling. The job is
opened through the dispatcher (all refusals write nothing) and followed to its end: one JSON body,
or an SSE stream as OpenAI's ending in a chunk with no choices that carries `usage` and `hearth`.
A client that leaves mid-stream cancels its job and pays for what was streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from hearth.errors import HearthError, TooLarge
from hearth.net.asgi_body import read_body
from hearth.net.http_errors import body_for
from hearth.public_swarm.coordinator import openai_wire as W
from hearth.public_swarm.coordinator.dispatch import Dispatcher
from hearth.public_swarm.coordinator.dispatch_rules import JobEnded, JobSpec, TextDelta, free_account
from hearth.public_swarm.coordinator.job_rules import Job
from hearth.public_swarm.coordinator.job_wire import VERIFIED_ONLY_HEADER, verified_only
from hearth.public_swarm.coordinator.wire import CHAT, COMPLETIONS, MODELS
from hearth.public_swarm.pricing import parse_ceiling

log = logging.getLogger("hearth.coordinator.openai")
MAX_PRICE_HEADER = "x-hearth-max-price"


def install_openai_routes(app: FastAPI, dispatcher: Dispatcher) -> None:
    """Add the requester routes to `app`; jobs go through `dispatcher`."""
    leaving: set[asyncio.Task[object]] = set()

    @app.get(MODELS)
    def models() -> JSONResponse:
        return JSONResponse(W.model_list(dispatcher.served_models()))

    async def complete(request: Request, kind: str) -> JSONResponse | StreamingResponse:
        raw = await read_body(request.receive, W.MAX_BODY, TooLarge(f"The request body is over {W.MAX_BODY} bytes."))
        if raw is None:
            return JSONResponse({}, status_code=400)  # the client left before sending its body
        body, job_request = W.parse_body(raw, kind)
        header = request.headers.get(MAX_PRICE_HEADER)
        ceiling = parse_ceiling(header) if header is not None else None
        signer = request.scope.get("state", {}).get("signer")
        address = None if isinstance(signer, str) else (request.client.host if request.client else "unknown")
        account = signer if isinstance(signer, str) else free_account(address or "unknown")
        only = verified_only(request.headers.get(VERIFIED_ONLY_HEADER))
        job = await asyncio.to_thread(dispatcher.open_job, account, secrets.token_hex(16), body.model, job_request,
                                      ceiling, kind=kind, free_address=address, verified_only=only)
        model = JobSpec.from_json(job.request).model
        if body.stream:
            held = await asyncio.to_thread(dispatcher.hold_amount, job)
            return StreamingResponse(_stream(request, dispatcher, job, kind, model, account, leaving),
                                     media_type="text/event-stream", headers={
                                         "X-Hearth-Max-Cost": str(held), "Cache-Control": "no-cache"})
        text, end = [], None
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(request, gone))
        try:
            async for update in _until(dispatcher.follow(job.id), gone):
                if isinstance(update, TextDelta):
                    text.append(update.text)
                else:
                    end = update
        finally:
            watcher.cancel()
            if end is None:  # the client left (timed out, closed) first: stop paying for a reply nobody reads
                _cancel_later(dispatcher, job.id, account, leaving)
        if end is None:
            return JSONResponse({}, status_code=499)  # nobody is there to read it
        if end.state != "done":
            raise W.failed(end)
        answer = JSONResponse(W.response(kind, model, "".join(text), end, int(job.created_at)),
                              headers={"X-Hearth-Cost": str(end.cost)})
        await asyncio.to_thread(dispatcher.retention.delivered, job.id)  # the reply is built: forget it
        return answer

    @app.post(CHAT, response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        return await complete(request, "chat")

    @app.post(COMPLETIONS, response_model=None)
    async def completions(request: Request) -> JSONResponse | StreamingResponse:
        return await complete(request, "completion")


async def _stream(request: Request, dispatcher: Dispatcher, job: Job, kind: str, model: str, account: str,
                  leaving: set[asyncio.Task[object]]) -> AsyncIterator[bytes]:
    """The SSE body; when the client leaves first, the job is cancelled (it pays what streamed)."""
    created, end = int(job.created_at), None
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(request, gone))
    try:
        yield W.sse(W.chunk(kind, job.id, model, created, first=True)) if kind == "chat" else b": open\n\n"
        async for update in _until(dispatcher.follow(job.id), gone):
            if isinstance(update, TextDelta):
                yield W.sse(W.chunk(kind, job.id, model, created, text=update.text))
            else:
                end = update
        if end is None:
            return
        if end.state == "done":
            yield W.sse(W.chunk(kind, job.id, model, created, finish_reason=end.finish_reason))
            yield W.sse(W.usage_chunk(kind, model, end, created))
            await asyncio.to_thread(dispatcher.retention.delivered, job.id)  # streamed in full: forget it
        else:
            yield W.sse(body_for(W.failed(end)))
        yield W.sse("[DONE]")
    finally:
        watcher.cancel()
        if end is None:  # the client left (or the server stops) before the end: cancel the job
            _cancel_later(dispatcher, job.id, account, leaving)


def _cancel_later(dispatcher: Dispatcher, job_id: str, account: str, leaving: set[asyncio.Task[object]]) -> None:
    """Cancel a job whose client left, in the background (it pays for what streamed)."""
    task: asyncio.Task[object] = asyncio.get_running_loop().create_task(
        asyncio.to_thread(_cancel, dispatcher, job_id, account))
    leaving.add(task)
    task.add_done_callback(leaving.discard)


async def _until(updates: AsyncIterator[W.JobUpdate], gone: asyncio.Event) -> AsyncIterator[W.JobUpdate]:
    """The updates, until the client is gone."""
    iterator = aiter(updates)
    try:
        while not gone.is_set():
            step = asyncio.ensure_future(anext(iterator))
            stop = asyncio.ensure_future(gone.wait())
            done, _ = await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if step not in done:
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
                return
            try:
                yield step.result()
            except StopAsyncIteration:
                return
    finally:
        with contextlib.suppress(RuntimeError, AttributeError):
            await iterator.aclose()  # type: ignore[attr-defined]


async def _watch_disconnect(request: Request, gone: asyncio.Event) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


def _cancel(dispatcher: Dispatcher, job_id: str, account: str) -> None:
    try:
        dispatcher.cancel(job_id, account)
    except HearthError as exc:
        log.info("job %s: cancel after the client left: %s", job_id, exc.message)


__all__ = ["JobEnded", "install_openai_routes"]
