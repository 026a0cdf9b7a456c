"""What a request may carry, checked before any work is done for it.

Bodies are read here, up to a size limit, and handed on as JSON whatever their Content-Type
(Ollama's own `curl -d` examples send a form type, its Python client none). Prompt size and stop
sequences are checked before tokenizing, which would otherwise hold the engine for as long as
the text is long.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.errors import ContextOverflow, InvalidRequest, TooLarge
from hearth.net.http_errors import hearth_error_response
from hearth.settings import Settings
from hearth.units import digits

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyGuard:
    """Reads each request body in full, refusing it (413) past `limit` bytes, then replays it
    to the app marked as JSON. Plain ASGI: BaseHTTPMiddleware would copy streamed replies."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not digits(declared) or int(declared) > self.limit):
            await self._refuse(scope, receive, send, path)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send, path)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then the client's disconnect, when it comes

        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        headers.append((b"content-type", b"application/json"))
        await self.app(dict(scope, headers=headers), replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        exc = TooLarge(f"The request body is over {self.limit} bytes (HEARTH_MAX_BODY_BYTES); send less.")
        await hearth_error_response(exc, path)(scope, receive, send)


def check_request(settings: Settings, texts: Iterable[str], stops: Sequence[str] = ()) -> None:
    """Refuse a prompt over HEARTH_MAX_PROMPT_CHARS and stop sequences over their limits."""
    total = sum(len(t) for t in texts)
    if total > settings.max_prompt_chars:
        raise ContextOverflow(
            f"The prompt is {total} characters; hearth accepts at most {settings.max_prompt_chars} "
            "(HEARTH_MAX_PROMPT_CHARS). Shorten it.", param="messages")
    if len(stops) > settings.max_stop:
        raise InvalidRequest(f"{len(stops)} stop sequences; at most {settings.max_stop} are allowed.", param="stop")
    for stop in stops:
        if not stop:
            raise InvalidRequest("A stop sequence cannot be empty.", param="stop")
        if len(stop) > settings.max_stop_chars:
            raise InvalidRequest(f"A stop sequence is {len(stop)} characters; at most {settings.max_stop_chars} "
                                 "are allowed.", param="stop")
