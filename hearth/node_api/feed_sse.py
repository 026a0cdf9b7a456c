"""A Feed as a Server-Sent Events response: one helper for `hearth serve`'s `/hearth/events` and
the node agent's `/v1/node/events`, with the same bounds on both (streams per client address,
subscribers per feed) and the same validation of `?since=` / `Last-Event-ID`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from hearth.errors import InvalidRequest
from hearth.node_api.feed import HEARTBEAT, Feed, TooManyStreams, sse_lines
from hearth.node_api.status import HEARTBEAT_S

MAX_STREAMS_PER_CLIENT = 4
"""Event streams one client address may hold open (a feed allows 16 in all)."""
MAX_SINCE = 2**53
POLL_S = 1.0
"""How often an idle stream checks that its client is still there."""


def heartbeat_s() -> float:
    """The idle stream's comment interval: a route dependency, so tests can shorten it."""
    return HEARTBEAT_S


def parse_since(query: str | None, header: str | None) -> int | None:
    """`?since=` (else `Last-Event-ID`): a sequence number 0..2^53; InvalidRequest otherwise."""
    raw, param = (query, "since") if query is not None else (header, "Last-Event-ID")
    if raw is None:
        return None
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 16 or int(text) > MAX_SINCE:
        raise InvalidRequest(f"{param} must be an event's sequence number (a whole number from 0).", param=param)
    return int(text)


class StreamLimit:
    """Open streams per client address, for one listener."""

    def __init__(self, per_client: int = MAX_STREAMS_PER_CLIENT) -> None:
        self.per_client = per_client
        self.open: dict[str, int] = {}

    def take(self, client: str) -> None:
        if self.open.get(client, 0) >= self.per_client:
            raise TooManyStreams(f"{client or 'this client'} already holds {self.per_client} event streams here; "
                                 "close one and retry.")
        self.open[client] = self.open.get(client, 0) + 1

    def give(self, client: str) -> None:
        left = self.open.get(client, 0) - 1
        if left > 0:
            self.open[client] = left
        else:
            self.open.pop(client, None)


def event_stream(request: Request, feed: Feed, since: int | None, every: float,
                 limit: StreamLimit) -> StreamingResponse:
    """Server-Sent Events from `feed` (what it holds after `since` first), a comment every
    `every` idle seconds. TooManyStreams (429) past the client's or the feed's bound."""
    client = request.client.host if request.client else ""
    limit.take(client)
    try:
        sub = feed.attach(since)
    except TooManyStreams:
        limit.give(client)
        raise

    def done() -> None:
        if sub.detach():
            limit.give(client)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield HEARTBEAT  # at once: the reader knows it is connected
            step = min(POLL_S, every)
            idle = 0.0
            while True:
                try:
                    event = await sub.get(timeout=step)
                except StopAsyncIteration:
                    return
                if event is not None:
                    idle = 0.0
                    yield sse_lines(event)
                    continue
                if await request.is_disconnected():
                    return
                idle += step
                if idle >= every:
                    idle = 0.0
                    yield HEARTBEAT
        finally:
            done()

    return StreamingResponse(body(), media_type="text/event-stream", background=BackgroundTask(done),
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
