"""Carries the pairing exchange over TCP: one JSON object per line, at most 16 KiB a line.

The host listens (and is found by mDNS or `--to`), or both sides meet through a rendezvous
(hearth.pairing.rendezvous) that splices their connections. Either way the messages are those of
hearth.pairing.exchange, which holds every decision; this module only moves them, and tells the
other side when this one gives up ({"t": "error", "message": ...}).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from hearth.net.endpoint import join_host_port
from hearth.pairing.exchange import (
    NotAnAttempt,
    PairingFailed,
    PairingGuest,
    PairingHost,
    PairingInfo,
    PairingUnreachable,
)
from hearth.pairing.limits import ConnectionLimit, client_key

MAX_LINE = 16 * 1024
STEP_TIMEOUT_S = 30.0
FIRST_MESSAGE_TIMEOUT_S = 10.0
MAX_CONNECTIONS_PER_ADDRESS = 4
MAX_CONNECTIONS = 32


@dataclass(frozen=True)
class Paired:
    peer: PairingInfo
    verifier: str
    secret: bytes


def decode(line: bytes) -> Any:
    """One received line as a message; an error message from the other side becomes PairingFailed."""
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise PairingFailed("The other side sent a malformed pairing message (too long or cut off).")
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise PairingFailed("The other side sent a pairing message that is not JSON.") from exc
    if isinstance(msg, dict) and msg.get("t") == "error":
        text = str(msg.get("message", ""))[:300].replace("\n", " ")
        raise PairingFailed(f"The other side gave up: {text}")
    return msg


async def receive_line(reader: asyncio.StreamReader, timeout: float = STEP_TIMEOUT_S) -> bytes:
    """One whole line as received (PairingFailed on silence, a close or a line too long)."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError as exc:
        raise PairingFailed(f"The other side sent nothing for {timeout:.0f} s.") from exc
    except (ValueError, asyncio.LimitOverrunError) as exc:  # a line past the reader's limit
        raise PairingFailed("The other side sent a pairing message that is too long.") from exc
    if not line:
        raise PairingFailed("The other side closed the connection.")
    return line


async def receive(reader: asyncio.StreamReader, timeout: float = STEP_TIMEOUT_S) -> Any:
    return decode(await receive_line(reader, timeout))


async def send(writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
    writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


async def _tell_error(writer: asyncio.StreamWriter, exc: PairingFailed) -> None:
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        await send(writer, {"t": "error", "message": exc.message})


async def host_session(host: PairingHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       first_timeout: float = FIRST_MESSAGE_TIMEOUT_S) -> Paired:
    """The host's side of one connection: answer the guest's two messages.

    Until the host has answered a real key-exchange message nothing is spent: silence, garbage or
    a close raise NotAnAttempt and the code stays usable. After that, any failure burns it."""
    try:
        try:
            first = await receive(reader, first_timeout)
        except PairingFailed as exc:
            raise NotAnAttempt(exc.message) from exc
        except (ConnectionError, OSError) as exc:
            raise NotAnAttempt(f"The connection broke before pairing started: {exc}") from exc
        if host.state != "waiting":
            raise NotAnAttempt("Another guest is trying this code right now, or it was used; "
                               "wait for the host to say, or ask for a new code.")
        await send(writer, host.receive(first, time.time()))
        await send(writer, host.receive(await receive(reader), time.time()))
    except NotAnAttempt as exc:
        await _tell_error(writer, exc)
        raise
    except PairingFailed as exc:
        _burn(host)
        await _tell_error(writer, exc)
        raise
    except (ConnectionError, OSError) as exc:
        _burn(host)
        raise PairingFailed(f"The connection broke during pairing: {exc}") from exc
    assert host.peer is not None and host.verifier is not None
    return Paired(host.peer, host.verifier, host.secret)


def _burn(host: PairingHost) -> None:
    """An attempt under way ended without pairing: the guest has had its one guess."""
    if host.state == "used":
        host.state = "burned"


async def guest_session(guest: PairingGuest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Paired:
    try:
        if guest.state == "new":  # through a rendezvous, it went with the meet message
            await send(writer, guest.start())
        answer = guest.receive(await receive(reader))
        assert answer is not None
        await send(writer, answer)
        guest.receive(await receive(reader))
    except PairingFailed as exc:
        await _tell_error(writer, exc)
        raise
    except (ConnectionError, OSError) as exc:
        raise PairingFailed(f"The connection broke during pairing: {exc}") from exc
    assert guest.peer is not None and guest.verifier is not None
    return Paired(guest.peer, guest.verifier, guest.secret)


async def serve_host(host: PairingHost, bind: str, port: int, ready: asyncio.Event | None = None,
                     limit: ConnectionLimit | None = None, first_timeout: float = FIRST_MESSAGE_TIMEOUT_S) -> Paired:
    """Listen until a guest completes or spoils the code (one attempt), or the code expires.

    mDNS tells the whole LAN about this port, so connections that never attempt the exchange
    cost their sender, not the code: each may take FIRST_MESSAGE_TIMEOUT_S to speak, and one
    address holds at most MAX_CONNECTIONS_PER_ADDRESS at once (MAX_CONNECTIONS in all); more
    are closed at once."""
    outcome: asyncio.Future[Paired] = asyncio.get_running_loop().create_future()
    sessions: set[asyncio.Task[None]] = set()
    held = limit or ConnectionLimit(MAX_CONNECTIONS_PER_ADDRESS, MAX_CONNECTIONS)

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        try:
            result = await host_session(host, reader, writer, first_timeout)
            if not outcome.done():
                outcome.set_result(result)
        except NotAnAttempt:
            pass  # nothing was spent: keep waiting for the real guest
        except PairingFailed as exc:
            if not outcome.done() and host.state == "burned":
                outcome.set_exception(exc)
        finally:
            held.release(key)
            writer.close()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        key = client_key(str(peer[0]) if peer else "")
        if not held.acquire(key):
            writer.write(b'{"t":"error","message":"Too many connections from your address; try again soon."}\n')
            writer.close()
            return
        task = asyncio.create_task(one(reader, writer, key))
        sessions.add(task)
        task.add_done_callback(sessions.discard)

    try:
        server = await asyncio.start_server(accept, host=bind, port=port, limit=MAX_LINE + 1)
    except OSError as exc:
        where = join_host_port(bind, port)
        raise PairingFailed(f"Cannot wait for the other machine on {where}: {exc.strerror or exc}; "
                            "choose another --port or --bind.") from exc
    if ready is not None:
        ready.set()
    try:
        return await asyncio.wait_for(asyncio.shield(outcome), max(0.0, host.expires - time.time()))
    except TimeoutError as exc:
        raise PairingFailed("Nobody used the code before it expired; run `hearth pair` again.") from exc
    finally:
        server.close()
        for task in list(sessions):
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        await server.wait_closed()


async def join(guest: PairingGuest, host: str, port: int, timeout: float = 10.0) -> Paired:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=MAX_LINE + 1), timeout)
    except (OSError, TimeoutError) as exc:
        where = join_host_port(host, port)
        raise PairingUnreachable(f"Cannot reach the pairing host at {where}: {exc or 'timed out'}; check --to, "
                                 "and that `hearth pair` still waits there.") from exc
    try:
        return await guest_session(guest, reader, writer)
    finally:
        writer.close()
