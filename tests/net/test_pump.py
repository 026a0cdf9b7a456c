"""The byte pump the relay, the rendezvous and the sealed tunnel share, over real loopback sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from hearth.net.pump import CHUNK, pump

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 20) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@dataclass
class Link:
    """Both ends of one real TCP connection on loopback."""

    client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    server: tuple[asyncio.StreamReader, asyncio.StreamWriter]

    def close(self) -> None:
        for _, w in (self.client, self.server):
            w.close()


async def link() -> Link:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future())
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await asyncio.open_connection("127.0.0.1", port)
    try:
        return Link(client, await accepted)
    finally:
        server.close()
        await server.wait_closed()


def reset(writer: asyncio.StreamWriter) -> None:
    """Hang up hard: the other side's next read or write fails with a connection reset."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_copies_everything_in_chunks_then_half_closes() -> None:
    payload = os.urandom(3 * CHUNK + 123)

    async def main() -> None:
        src, dst = await link(), await link()
        counts: list[int] = []
        try:
            copying = asyncio.create_task(pump(src.server[0], dst.server[1], count=counts.append))
            src.client[1].write(payload)
            src.client[1].write_eof()
            got = await dst.client[0].read()  # to EOF: the pump half-closed its side
            await copying
            assert got == payload
            assert sum(counts) == len(payload) and max(counts) <= CHUNK
            # Half-closed, not closed: the far side can still answer.
            dst.client[1].write(b"answer")
            assert await dst.server[0].readexactly(6) == b"answer"
        finally:
            src.close()
            dst.close()

    run(main())


def test_a_source_that_hangs_up_ends_the_copy_like_an_end() -> None:
    async def main() -> None:
        src, dst = await link(), await link()
        try:
            copying = asyncio.create_task(pump(src.server[0], dst.server[1]))
            src.client[1].write(b"before the cut")
            await src.client[1].drain()
            assert await dst.client[0].readexactly(14) == b"before the cut"
            reset(src.client[1])
            await copying  # no exception: a hang-up is the end
            assert await dst.client[0].read() == b""  # and the far side is told so
        finally:
            src.close()
            dst.close()

    run(main())


def test_a_destination_that_hangs_up_ends_the_copy_and_closes_the_source() -> None:
    async def main() -> None:
        dst = await link()
        finished = asyncio.Event()

        async def endless() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield bytes(CHUNK)
            finally:
                finished.set()

        try:
            copying = asyncio.create_task(pump(endless(), dst.server[1]))
            await dst.client[0].readexactly(CHUNK)
            reset(dst.client[1])
            await copying  # the write failed: that ends the copy, without an exception
            assert finished.is_set()  # the generator left mid-way was closed, not abandoned
        finally:
            dst.close()

    run(main())


def test_a_broken_link_can_mean_abort_instead_of_end() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b"sealed frame"
        raise EOFError("truncated: no final frame")

    async def main() -> None:
        dst = await link()
        calls: list[str] = []
        try:
            await pump(frames(), dst.server[1], broken=lambda: calls.append("abort"), breaks=(EOFError, OSError))
            assert calls == ["abort"]
            assert await dst.client[0].readexactly(12) == b"sealed frame"
            with pytest.raises(TimeoutError):  # no half-close was sent: a read at EOF would return at once
                await asyncio.wait_for(dst.client[0].read(1), 0.3)
        finally:
            dst.close()

    run(main())


def test_chunks_can_be_transformed_and_other_errors_propagate() -> None:
    async def upper(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while data := await reader.read(4):
            if data == b"boom":
                raise ValueError("a frame the caller refuses")
            yield data.upper()

    async def main() -> None:
        src, dst = await link(), await link()
        try:
            src.client[1].write(b"abcdefgh")
            src.client[1].write_eof()
            await pump(upper(src.server[0]), dst.server[1])
            assert await dst.client[0].read() == b"ABCDEFGH"
            more = await link()
            more.client[1].write(b"boom")
            with pytest.raises(ValueError, match="refuses"):
                await pump(upper(more.server[0]), dst.client[1])
            more.close()
        finally:
            src.close()
            dst.close()

    run(main())
