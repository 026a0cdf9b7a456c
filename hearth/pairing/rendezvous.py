"""A rendezvous for pairing beyond the LAN: both sides dial it, it splices them by nameplate.

    side -> rendezvous   {"t": "meet", "nameplate": N, "side": "host" | "guest"}
    rendezvous -> side   {"t": "met", "observed": "IP:PORT"}   (then raw bytes both ways)

The exchange runs end to end through the splice, so the rendezvous never learns the key: it can
refuse service or make one guess (which burns the code), no more. It holds one waiting host per
nameplate, a bounded number in all, each for at most the code's lifetime, and forgets the
nameplate once a guest is spliced to it. `observed` is the address each side was seen from:
what NAT traversal will build on (docs/nat-traversal.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from hearth.pairing.codes import MAX_NAMEPLATE
from hearth.pairing.exchange import DEFAULT_TTL_S, PairingFailed
from hearth.pairing.transport import MAX_LINE, receive, send

DEFAULT_RENDEZVOUS_PORT = 11438


def parse_meet(msg: Any) -> tuple[int, str]:
    """(nameplate, side) from a meet message, or PairingFailed."""
    if not isinstance(msg, dict) or msg.get("t") != "meet":
        raise PairingFailed("Expected a meet message.")
    nameplate, side = msg.get("nameplate"), msg.get("side")
    if type(nameplate) is not int or not 0 < nameplate <= MAX_NAMEPLATE:
        raise PairingFailed(f"The meet message's nameplate is not a number from 1 to {MAX_NAMEPLATE}.")
    if side not in ("host", "guest"):
        raise PairingFailed("The meet message's side is neither 'host' nor 'guest'.")
    return nameplate, str(side)


def _observed(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if not peer:
        return ""
    return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"


@dataclass
class _Waiting:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    spliced: asyncio.Future[None]


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(1 << 16):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass  # one side hung up: the splice ends and both are closed
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            dst.write_eof()


class Rendezvous:
    def __init__(self, bind: str, port: int = DEFAULT_RENDEZVOUS_PORT, max_waiting: int = 64,
                 ttl: float = DEFAULT_TTL_S) -> None:
        self.bind, self.port = bind, port
        self.max_waiting, self.ttl = max_waiting, ttl
        self.waiting: dict[int, _Waiting] = {}
        self.spliced = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        try:
            self._server = await asyncio.start_server(self._accept, self.bind, self.port, limit=MAX_LINE + 1)
        except OSError as exc:
            raise PairingFailed(f"Cannot listen on {self.bind}:{self.port}: {exc.strerror or exc}.") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            nameplate, side = parse_meet(await receive(reader, timeout=10.0))
            if side == "host":
                await self._hold(nameplate, reader, writer)
            else:
                await self._splice(nameplate, reader, writer)
        except PairingFailed as exc:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                await send(writer, {"t": "error", "message": exc.message})
        finally:
            writer.close()

    async def _hold(self, nameplate: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if nameplate in self.waiting:
            raise PairingFailed(f"A host already waits with nameplate {nameplate}; run `hearth pair` again.")
        if len(self.waiting) >= self.max_waiting:
            raise PairingFailed("This rendezvous holds as many waiting hosts as it allows; try again later.")
        me = _Waiting(reader, writer, asyncio.get_running_loop().create_future())
        self.waiting[nameplate] = me
        try:
            await asyncio.wait_for(asyncio.shield(me.spliced), self.ttl)
        except TimeoutError as exc:
            raise PairingFailed("No guest came before the code expired.") from exc
        finally:
            if self.waiting.get(nameplate) is me:
                del self.waiting[nameplate]

    async def _splice(self, nameplate: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host = self.waiting.pop(nameplate, None)
        if host is None:
            raise PairingFailed(f"No host waits with nameplate {nameplate}: check the code, or it expired.")
        try:
            await send(host.writer, {"t": "met", "observed": _observed(host.writer)})
            await send(writer, {"t": "met", "observed": _observed(writer)})
            self.spliced += 1
            await asyncio.gather(_pipe(reader, host.writer), _pipe(host.reader, writer))
        except (ConnectionError, OSError) as exc:
            raise PairingFailed(f"The other side hung up: {exc}") from exc
        finally:
            if not host.spliced.done():
                host.spliced.set_result(None)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def meet(address: str, port: int, nameplate: int, side: str,
               timeout: float = DEFAULT_TTL_S) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Dial the rendezvous and wait to be spliced; returns the streams and our observed address."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port, limit=MAX_LINE + 1), 10.0)
    except (OSError, TimeoutError) as exc:
        raise PairingFailed(f"Cannot reach the rendezvous at {address}:{port}: {exc or 'timed out'}") from exc
    try:
        await send(writer, {"t": "meet", "nameplate": nameplate, "side": side})
        met = await receive(reader, timeout=timeout if side == "host" else 10.0)
        if not isinstance(met, dict) or met.get("t") != "met":
            raise PairingFailed("The rendezvous answered something other than 'met'.")
    except BaseException:
        writer.close()
        raise
    return reader, writer, str(met.get("observed", ""))[:64]
