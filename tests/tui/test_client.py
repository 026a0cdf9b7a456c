"""DashClient over real sockets on 127.0.0.1: nothing listening, a stream that drops and comes
back (with `since=`), answers that are not hearth's. The server here is a few lines of asyncio
that write HTTP by hand, so a test decides exactly when a connection drops; the real `hearth
serve` is read in test_live.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hearth.node_api.status import DashEvent
from hearth.tui.client import DashAnswerInvalid, DashClient, DashUnreachable
from tests.conftest import free_port
from tests.rpc_pool.nodes import running_node

Handler = Callable[[str, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def http_server(handler: Handler) -> AsyncIterator[str]:
    """Each request's target (`/hearth/events?since=2`) to `handler`, which writes the answer."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ")[1].decode()
        try:
            await handler(target, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


def sse(seq: int) -> bytes:
    event = DashEvent(seq=seq, at=1.0, kind="request_done", message=f"done {seq}")
    return f"id: {seq}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n".encode()


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"


def test_nothing_listening_says_how_to_start_hearth_serve() -> None:
    async def go() -> None:
        async with DashClient(f"http://127.0.0.1:{free_port()}") as client:
            with pytest.raises(DashUnreachable, match="hearth serve"):
                await client.status()
            with pytest.raises(DashUnreachable, match="hearth serve"):
                await anext(client.events())
    asyncio.run(go())


def test_a_dropped_stream_is_opened_again_after_the_last_event_seen() -> None:
    targets: list[str] = []

    async def handler(target: str, writer: asyncio.StreamWriter) -> None:
        targets.append(target)
        writer.write(HEAD + b": hello\n\n")
        since = int(target.rpartition("=")[2])
        for seq in range(since + 1, since + 3):
            writer.write(sse(seq))
        await writer.drain()  # then the connection closes: a drop

    async def go() -> list[int]:
        async with http_server(handler) as url, DashClient(url) as client:
            seen = []
            async for event in client.events(since=5):
                seen.append(event.seq)
                if len(seen) == 6:
                    break
            return seen
    assert asyncio.run(go()) == [6, 7, 8, 9, 10, 11]
    assert targets == ["/hearth/events?since=5", "/hearth/events?since=7", "/hearth/events?since=9"]


def test_reconnecting_gives_up_when_the_server_stays_gone() -> None:
    async def handler(target: str, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + sse(1))
        await writer.drain()

    async def go() -> list[int]:
        seen = []
        async with DashClient(f"http://127.0.0.1:{free_port()}") as client:
            async with http_server(handler) as url:
                client.url = url
                stream = client.events(give_up_after=0.5)
                seen.append((await anext(stream)).seq)
            with pytest.raises(DashUnreachable, match="hearth serve"):  # closed now: reconnects fail, then stop
                seen.append((await anext(stream)).seq)
        return seen
    assert asyncio.run(go()) == [1]


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"a\": 1}\n",
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n",
])
def test_an_answer_that_is_not_a_hearth_status_is_refused_typed(answer: bytes) -> None:
    async def handler(target: str, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()

    async def go() -> None:
        async with http_server(handler) as url, DashClient(url) as client:
            with pytest.raises(DashAnswerInvalid):
                await client.status()
    asyncio.run(go())


@pytest.mark.parametrize("body", [b"data: {\"seq\": 0}\n\n", b"data: " + b"x" * 70_000, b"data: not json\n\n"])
def test_a_stream_that_is_not_hearth_events_is_refused_typed(body: bytes) -> None:
    async def handler(target: str, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + body)
        await writer.drain()

    async def go() -> None:
        async with http_server(handler) as url, DashClient(url) as client:
            with pytest.raises(DashAnswerInvalid):
                await anext(client.events())
    asyncio.run(go())


def test_the_status_is_read_and_the_key_sent() -> None:
    seen: list[str] = []

    async def handler(target: str, writer: asyncio.StreamWriter) -> None:
        body = json.dumps({"version": "9", "model": "smollm2-135m", "future_field": [1]}).encode()
        seen.append(target)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async def go() -> str | None:
        async with http_server(handler) as url, DashClient(url, api_key="k") as client:
            return (await client.status()).model
    assert asyncio.run(go()) == "smollm2-135m"
    assert seen == ["/hearth/status"]


def test_a_real_nodes_status_is_read(tmp_path: Path) -> None:
    """`hearth node` on 127.0.0.1 (a real agent, no model): what the dashboard asks of a node."""
    with running_node(tmp_path, name="den") as node:
        async def go() -> str:
            async with DashClient() as client:
                return (await client.node_status(node.url.removeprefix("http://"))).name
        assert asyncio.run(go()) == "den"
