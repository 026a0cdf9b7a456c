"""A rendezvous for pairing beyond the LAN: both sides dial it, it splices them by nameplate.

    host  -> rendezvous   {"t": "meet", "nameplate": N, "side": "host"}
    guest -> rendezvous   {"t": "meet", "nameplate": N, "side": "guest"}, at once its "pake" line
    rendezvous -> side    {"t": "met", "observed": "IP:PORT"}   (then raw bytes both ways; the
                          host's first line after "met" is the guest's "pake" line)

The exchange runs end to end through the splice, so the rendezvous never learns the key: it can
refuse service or make one guess (which burns the code), no more. `observed` is the address each
side was seen from: what NAT traversal will build on (docs/nat-traversal.md).

Why one failed attempt still burns a code, and what a guess costs. The code's two words carry
16 bits, enough only because SPAKE2 lets one run of the exchange test one password guess. A
nameplate that survived k failed attempts would hand every stranger k guesses (k in 65536), and
the rendezvous cannot tell a stranger's failure from a typo, so it cannot spend them on strangers
only. So a real attempt still spends the code, and everything short of one costs the guesser:
- Nothing reaches a waiting host until a guest has sent a real attempt, a meet followed by a
  key-exchange message that is a curve point for that nameplate (exchange.check_pake). A bare
  connect, a meet alone, garbage, silence or a close leave the host waiting, untouched.
- One address (an IPv6 /64 counts as one) may make GUESSES_PER_MINUTE guest meets, hits and misses
  alike. Scanning the 999 nameplates `hearth pair` picks from takes one address 100 minutes, 20
  code lifetimes: in one code's 5 minutes it reaches 50 nameplates (5 %), and learns which are
  taken no faster.
- Hosts: one per nameplate, HOSTS_PER_ADDRESS waiting per address, max_waiting in all, each for
  at most the code's lifetime; a host whose socket closes frees its nameplate at once, so lines
  from closed sockets hold nothing.
- Connections: CONNECTIONS_PER_ADDRESS open per address; the meet must come within
  MEET_TIMEOUT_S, a guest's key-exchange line within PAKE_TIMEOUT_S.
Many addresses can still spend codes at the sum of their rates: denial of service, never a
pairing, since each spent code gave its spender one guess at 1 in 65536.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from hearth.net.endpoint import Endpoint, join_host_port
from hearth.net.pump import pump
from hearth.pairing.codes import MAX_NAMEPLATE
from hearth.pairing.exchange import DEFAULT_TTL_S, PairingFailed, PairingUnreachable, check_pake
from hearth.pairing.limits import ConnectionLimit, RateLimit, client_key
from hearth.pairing.transport import MAX_LINE, decode, receive, receive_line, send
from hearth.ports import DEFAULT_RENDEZVOUS_PORT

GUESSES_PER_MINUTE = 10
HOSTS_PER_ADDRESS = 4
CONNECTIONS_PER_ADDRESS = 8
MAX_CONNECTIONS = 512
MEET_TIMEOUT_S = 10.0
PAKE_TIMEOUT_S = 5.0


def parse_meet(msg: Any) -> tuple[int, str]:
    """(nameplate, side) from a meet message, or PairingFailed."""
    if not isinstance(msg, dict) or msg.get("t") != "meet":
        raise PairingFailed("Expected a meet message: is the other side a hearth of the same version?")
    nameplate, side = msg.get("nameplate"), msg.get("side")
    if type(nameplate) is not int or not 0 < nameplate <= MAX_NAMEPLATE:
        raise PairingFailed(f"The meet message's nameplate is not a number from 1 to {MAX_NAMEPLATE}.")
    if side not in ("host", "guest"):
        raise PairingFailed("The meet message's side is neither 'host' nor 'guest'.")
    return nameplate, str(side)


def _observed(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(Endpoint(peer[0], peer[1])) if peer else ""


@dataclass
class _Waiting:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    key: str
    spliced: asyncio.Future[None]
    watch: asyncio.Task[bytes]
    """Reads the host's socket while it waits: it must stay silent, so a read ending means it left."""
    taken: bool = False


class Rendezvous:
    def __init__(self, bind: str, port: int = DEFAULT_RENDEZVOUS_PORT, max_waiting: int = 256,
                 ttl: float = DEFAULT_TTL_S, guesses_per_minute: int = GUESSES_PER_MINUTE,
                 hosts_per_address: int = HOSTS_PER_ADDRESS,
                 connections_per_address: int = CONNECTIONS_PER_ADDRESS) -> None:
        self.bind, self.port = bind, port
        self.max_waiting, self.ttl, self.hosts_per_address = max_waiting, ttl, hosts_per_address
        self.waiting: dict[int, _Waiting] = {}
        self.spliced = 0
        self.throttled = 0
        """Guest meets refused for their address's rate."""
        self.connections = ConnectionLimit(connections_per_address, MAX_CONNECTIONS)
        self.guesses = RateLimit(guesses_per_minute, 60.0)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        try:
            self._server = await asyncio.start_server(self._accept, self.bind, self.port, limit=MAX_LINE + 1)
        except OSError as exc:
            where = join_host_port(self.bind, self.port)
            raise PairingFailed(f"Cannot listen on {where}: {exc.strerror or exc}.") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        key = client_key(str(peer[0]) if peer else "")
        if not self.connections.acquire(key):
            writer.write(b'{"t":"error","message":"Too many connections from your address; try again soon."}\n')
            writer.close()
            return
        task = asyncio.create_task(self._serve(reader, writer, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        try:
            nameplate, side = parse_meet(await receive(reader, timeout=MEET_TIMEOUT_S))
            if side == "host":
                await self._hold(nameplate, reader, writer, key)
            else:
                await self._splice(nameplate, reader, writer, key)
        except PairingFailed as exc:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                await send(writer, {"t": "error", "message": exc.message})
        finally:
            self.connections.release(key)
            writer.close()

    async def _hold(self, nameplate: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    key: str) -> None:
        if nameplate in self.waiting:
            raise PairingFailed(f"A host already waits with nameplate {nameplate}; run `hearth pair` again.")
        if sum(w.key == key for w in self.waiting.values()) >= self.hosts_per_address:
            raise PairingFailed(f"{self.hosts_per_address} hosts from your address already wait here; "
                                "finish those pairings first.")
        if len(self.waiting) >= self.max_waiting:
            raise PairingFailed("This rendezvous holds as many waiting hosts as it allows; try again later.")
        me = _Waiting(reader, writer, key, asyncio.get_running_loop().create_future(),
                      asyncio.create_task(reader.read(1)))
        self.waiting[nameplate] = me
        try:
            either: set[asyncio.Future[Any]] = {me.spliced, me.watch}
            await asyncio.wait(either, timeout=self.ttl, return_when=asyncio.FIRST_COMPLETED)
            if me.taken:
                await me.spliced
            elif not me.watch.done():
                raise PairingFailed("No guest came before the code expired.")
            # else the host hung up (or spoke before "met"): its nameplate is free again
        finally:
            if self.waiting.get(nameplate) is me:
                del self.waiting[nameplate]
            me.watch.cancel()
            await asyncio.gather(me.watch, return_exceptions=True)

    async def _splice(self, nameplate: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      key: str) -> None:
        if not self.guesses.allow(key, time.monotonic()):
            self.throttled += 1
            raise PairingFailed(f"More than {self.guesses.count} pairing attempts a minute from your address; "
                                "wait a minute, and check the code.")
        line = await receive_line(reader, PAKE_TIMEOUT_S)  # the guest's real attempt, before any host sees it
        check_pake(decode(line), nameplate)
        host = self.waiting.get(nameplate)
        if host is None or host.watch.done():
            raise PairingFailed(f"No host waits with nameplate {nameplate}: check the code, or it expired.")
        del self.waiting[nameplate]
        host.taken = True
        host.watch.cancel()
        await asyncio.gather(host.watch, return_exceptions=True)
        try:
            if not host.watch.cancelled():  # its read ended first: the host left this very moment
                raise PairingFailed(f"The host with nameplate {nameplate} just left; ask for a new code.")
            await send(host.writer, {"t": "met", "observed": _observed(host.writer)})
            host.writer.write(line)
            await send(writer, {"t": "met", "observed": _observed(writer)})
            self.spliced += 1
            # A hang-up ends its direction with a half-close; _serve's finally closes both sockets.
            await asyncio.gather(pump(reader, host.writer), pump(host.reader, writer))
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


async def meet(address: str, port: int, nameplate: int, side: str, first: dict[str, Any] | None = None,
               timeout: float = DEFAULT_TTL_S) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Dial the rendezvous and wait to be spliced; returns the streams and our observed address.
    A guest passes its first exchange message as `first`: the rendezvous wants it before splicing."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port, limit=MAX_LINE + 1), 10.0)
    except (OSError, TimeoutError) as exc:
        where = join_host_port(address, port)
        raise PairingUnreachable(f"Cannot reach the rendezvous at {where}: {exc or 'timed out'}; check --via, "
                                 "and that `hearth rendezvous` runs there.") from exc
    try:
        await send(writer, {"t": "meet", "nameplate": nameplate, "side": side})
        if first is not None:
            await send(writer, first)
        met = await receive(reader, timeout=timeout if side == "host" else 10.0)
        if not isinstance(met, dict) or met.get("t") != "met":
            raise PairingFailed("The rendezvous answered something other than 'met': is --via a `hearth rendezvous` "
                                "of the same version?")
    except (ConnectionError, OSError) as exc:
        writer.close()
        where = join_host_port(address, port)
        raise PairingUnreachable(f"The rendezvous at {where} hung up: {exc}; try again.") from exc
    except BaseException:
        writer.close()
        raise
    return reader, writer, str(met.get("observed", ""))[:64]
