"""Reading a request's body before the app does (to check its signature), then handing it on."""

from __future__ import annotations

from starlette.types import Message, Receive

from hearth.errors import HearthError


async def read_body(receive: Receive, limit: int, too_large: HearthError) -> bytes | None:
    """The whole body, None if the client left first; `too_large` is raised past `limit` bytes."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += bytes(message.get("body", b""))
        if len(body) > limit:
            raise too_large
        if not message.get("more_body", False):
            return body


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body already read, then whatever the client sends next."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
