"""Moving bytes between sockets: listeners, TCP_NODELAY, and the copy loop that the relay, the
rendezvous splice and the sealed tunnel share.

`pump` copies one direction. What differs between its callers comes in as arguments: the chunks
(a reader's raw reads, or a tunnel's sealed or opened frames from an async generator), a byte
counter, and what a broken link means (the relay and the rendezvous take a hang-up as the end and
half-close; the sealed tunnel must not let a cut look like a clean end, so it aborts both sides).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable

CHUNK = 1 << 16
HANGUP: tuple[type[BaseException], ...] = (ConnectionError, OSError)
"""What a peer that went away raises mid-copy (reset, broken pipe, unreachable)."""


async def chunks(reader: asyncio.StreamReader, size: int = CHUNK) -> AsyncIterator[bytes]:
    """The reader's bytes in reads of at most `size`, until EOF."""
    while data := await reader.read(size):
        yield data


async def pump(src: asyncio.StreamReader | AsyncIterable[bytes], dst: asyncio.StreamWriter, *,
               count: Callable[[int], None] | None = None,
               broken: Callable[[], None] | None = None,
               breaks: tuple[type[BaseException], ...] = HANGUP) -> None:
    """Copy `src` (a reader, read in CHUNK reads, or any async iterable of chunks) to `dst`, waiting
    for each write to drain, then half-close `dst` (write_eof), so the far side sees the end and
    can still answer.

    `count` is called with each chunk's length. An exception of `breaks` (a hang-up, by default)
    on either side ends the copy: `dst` is half-closed as at a clean end, unless `broken` is given,
    which is then called instead. Other exceptions propagate."""
    source = chunks(src) if isinstance(src, asyncio.StreamReader) else src
    try:
        async for data in source:
            if count is not None:
                count(len(data))
            dst.write(data)
            await dst.drain()
    except breaks:
        if broken is not None:
            broken()
            return
    finally:
        if isinstance(source, AsyncGenerator):  # left mid-way by a failed write: finish it now
            await source.aclose()
    with contextlib.suppress(OSError, RuntimeError):  # already closed (uvloop raises RuntimeError)
        dst.write_eof()


def nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def listening_socket(bind: str, port: int, device: str | None = None) -> socket.socket:
    """A TCP listener on bind:port; with `device`, it accepts only what arrives on that interface
    (SO_BINDTODEVICE): a tunnel address is then unreachable from the LAN even by a host that
    routes packets for it to this machine."""
    sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if device is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        sock.bind((bind, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
