"""The dashboard's client of a running `hearth serve` (and of the nodes it names): its status, its
event stream, a node's status. Every answer is bounded and checked against the wire models of
`hearth.node_api.status`; nothing answering is a `DashUnreachable` that says how to start one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from hearth.errors import HearthError, LinkFailed
from hearth.identity import NodeIdentity
from hearth.net.http_client import BoundedHttpClient
from hearth.node_api.status import NODE_EVENTS_PATH, SERVE_EVENTS_PATH, STATUS_PATH, DashEvent, ServeStatus
from hearth.node_api.wire import STATUS as NODE_STATUS_PATH
from hearth.node_api.wire import NodeStatus
from hearth.pairing.signed import SignedAuth
from hearth.ports import DEFAULT_SERVE_PORT
from hearth.tui.sse import LineSplitter, SseParser, SseTooLong

M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_SERVE_PORT}"
HOW_TO_START = ("start one with `hearth serve` (add --model NAME to load a model now), "
                "or point `hearth dash --url URL` at a running one")


class DashUnreachable(LinkFailed):
    """No `hearth serve` answered at the URL: start one, or give --url."""

    http_status = 503
    code = "serve_unreachable"
    exit_code = 12


class DashAnswerInvalid(LinkFailed):
    """Something answered that is not a `hearth serve` of this version (or its stream broke the bounds)."""

    http_status = 502
    code = "serve_answer_invalid"
    exit_code = 12


class DashClient(BoundedHttpClient):
    """One server's status and events. `api_key` is sent as a bearer token (a server bound
    beyond loopback needs it); `transport` replaces the network in tests."""

    max_answer = 2 * 1024 * 1024
    max_backoff = 2.0

    refused = "wants an API key: set HEARTH_API_KEY to the server's key"
    """What a 401 means, said after the URL."""

    def __init__(self, url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None, auth: httpx.Auth | None = None) -> None:
        super().__init__(timeout=timeout, transport=transport, auth=auth)
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def transport_error(self, exc: httpx.RequestError, timeout: float) -> HearthError:
        return DashUnreachable(f"Nothing answers at {self.url} ({type(exc).__name__}): {HOW_TO_START}.")

    def too_large(self, size: int, limit: int) -> HearthError:
        return DashAnswerInvalid(f"{self.url} answered more than {limit} bytes: is it a hearth server?")

    async def status(self) -> ServeStatus:
        return await self._get(self.url + STATUS_PATH, ServeStatus)

    async def node_status(self, endpoint: str) -> NodeStatus:
        """`GET /v1/node` of a node agent at HOST:PORT (or a full URL)."""
        base = endpoint if "://" in endpoint else f"http://{endpoint}"
        return await self._get(base.rstrip("/") + NODE_STATUS_PATH, NodeStatus)

    async def _get(self, url: str, model: type[M]) -> M:
        response, body = await self.exchange("GET", url, headers=self._headers)
        if response.status_code == 401:
            raise DashAnswerInvalid(f"{url} {self.refused}.")
        if response.status_code != 200:
            raise DashAnswerInvalid(f"{url} answered HTTP {response.status_code}: "
                                    "is it a hearth server of this version?")
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise DashAnswerInvalid(f"{url} answered something that is not a hearth status "
                                    f"({exc.error_count()} problem(s)); update hearth on one side.") from exc

    async def events(self, since: int = 0, *, give_up_after: float = 30.0,
                     url: str | None = None) -> AsyncIterator[DashEvent]:
        """Every event after `since`, for as long as the caller reads. A dropped stream is opened
        again with `since=` the last event seen, so none is lost or repeated while the server
        still holds it. The first connection failing, or `give_up_after` seconds of failed
        reconnects, raise `DashUnreachable`. `url`: another stream of DashEvents (a node's)."""
        stream = url or self.url + SERVE_EVENTS_PATH
        last, backoff = since, 0.1
        opened: list[bool] = []
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        while True:
            try:
                async for event in self._stream(stream, last, opened):
                    failing_since, backoff = None, 0.1
                    if event.seq > last:
                        last = event.seq
                        yield event
            except DashUnreachable:
                if not opened:
                    raise
                now = loop.time()
                failing_since = failing_since if failing_since is not None else now
                if now - failing_since > give_up_after:
                    raise
            else:
                failing_since = None  # ended cleanly: opened again soon (one that keeps ending backs off)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _stream(self, stream: str, since: int, opened: list[bool]) -> AsyncIterator[DashEvent]:
        url = f"{stream}?since={since}"
        read = httpx.Timeout(self.timeout, read=None)  # idle streams only send a heartbeat now and then
        async with self.streaming("GET", url, headers={**self._headers, "Accept": "text/event-stream"},
                                  timeout=read) as response:
            if response.status_code != 200:
                raise DashAnswerInvalid(f"{url} answered HTTP {response.status_code}: is it a hearth server "
                                        "of this version?")
            if not opened:
                opened.append(True)
            lines, parser = LineSplitter(), SseParser()
            async for chunk in response.aiter_bytes():
                try:
                    messages = [m for line in lines.feed(chunk) if (m := parser.feed(line)) is not None]
                except SseTooLong as exc:
                    raise DashAnswerInvalid(f"{url}: {exc}") from exc
                for message in messages:
                    yield _event(url, message.data)


class NodeFeedClient(DashClient):
    """The node agents a dashboard watches: `GET /v1/node` and `GET /v1/node/events` of each, by
    HOST:PORT, over one connection pool. Signed with this machine's identity when given (a node
    that admits paired peers only answers nothing else; household nodes ignore the signature)."""

    max_answer = 1024 * 1024
    refused = "refuses this machine (it serves paired peers only: pair with it)"

    def __init__(self, identity: NodeIdentity | None = None, *, timeout: float = 2.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__("", timeout=timeout, transport=transport,
                         auth=SignedAuth(identity) if identity is not None else None)

    def transport_error(self, exc: httpx.RequestError, timeout: float) -> HearthError:
        return DashUnreachable(f"the node does not answer ({type(exc).__name__})")

    def too_large(self, size: int, limit: int) -> HearthError:
        return DashAnswerInvalid(f"the node answered more than {limit} bytes: is it a hearth node?")

    def node_events(self, endpoint: str, since: int) -> AsyncIterator[DashEvent]:
        """The node's event stream after `since` (see `events`)."""
        return self.events(since, url=f"http://{endpoint}{NODE_EVENTS_PATH}")


def _event(url: str, data: str) -> DashEvent:
    try:
        return DashEvent.model_validate_json(data)
    except ValidationError as exc:
        raise DashAnswerInvalid(f"{url} sent an event that is not a hearth event; update hearth on one side.") from exc
