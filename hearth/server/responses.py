"""/v1/responses: OpenAI's Responses API, answered by the chat completions route.

The request is translated into a chat completions body and validated as one, the chat route
runs it (same guards, engine fields and disconnect handling), and its JSON or its streamed
chunks are translated back into a Response or the Responses event stream.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from hearth.errors import EngineFailed, InvalidRequest
from hearth.net.http_errors import validation_message
from hearth.server.responses_convert import (
    EventTranslator,
    chat_body,
    fit_to_chat,
    response_object,
    shell,
)
from hearth.server.responses_schema import ResponsesRequest
from hearth.server.schemas import ChatCompletionRequest, ChatMessage
from hearth.server.streaming import COST_HEADER, noting_departure

ChatRoute = Callable[[ChatCompletionRequest, Request], Awaitable[Response]]


def as_chat_request(req: ResponsesRequest) -> ChatCompletionRequest:
    body = fit_to_chat(chat_body(req), ChatCompletionRequest.model_fields, ChatMessage.model_fields)
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:  # what the Responses model let through and chat does not
        message, param = validation_message(RequestValidationError(exc.errors()))
        raise InvalidRequest(f"As a chat request: {message}", param=param) from None


def sse_event(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def chat_chunks(lines: bytes) -> list[dict[str, Any] | str]:
    """The payloads of the chat route's server-sent events in `lines` ('[DONE]' as a string)."""
    payloads: list[dict[str, Any] | str] = []
    for line in lines.split(b"\n"):
        if line.startswith(b"data: "):
            data = line[6:].decode()
            payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


def add_routes(app: FastAPI, default_model: str, chat: ChatRoute) -> None:
    @app.post("/v1/responses", response_model=None)
    async def responses(body: ResponsesRequest, request: Request) -> Response:
        chat_request = as_chat_request(body)
        rid = f"resp_{uuid.uuid4().hex[:24]}"
        answer = await chat(chat_request, request)
        model = (chat_request.model or default_model).strip()
        headers = {k: v for k, v in answer.headers.items() if k.lower() == COST_HEADER.lower()}
        if not isinstance(answer, StreamingResponse):
            completion = json.loads(bytes(answer.body))
            start = shell(body, rid, int(time.time()), completion.get("model", model))
            return JSONResponse(response_object(start, completion), headers=headers)
        chunks = answer.body_iterator
        assert isinstance(chunks, AsyncGenerator)  # the chat route's body() (closing it cancels the reply)
        return StreamingResponse(
            translated(chunks, EventTranslator(shell(body, rid, int(time.time()), model))),
            media_type="text/event-stream", headers=headers | {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def translated(chunks: AsyncGenerator[Any, None], events: EventTranslator) -> AsyncIterator[bytes]:
    """The Responses events for the chat route's stream; closing this closes that (and so the
    generation)."""
    async with contextlib.aclosing(chunks), noting_departure("a streamed response"):
        for event in events.opening():
            yield sse_event(event)
        async for raw in chunks:
            for chunk in chat_chunks(raw if isinstance(raw, bytes) else str(raw).encode()):
                if chunk == "[DONE]":
                    for event in events.close():
                        yield sse_event(event)
                    return
                assert isinstance(chunk, dict)
                out = events.fail(chunk["error"]) if "error" in chunk else events.feed(chunk)
                for event in out:
                    yield sse_event(event)
                if "error" in chunk:
                    return
        for event in events.fail({"code": EngineFailed.code, "message": "The reply ended without finishing."}):
            yield sse_event(event)
