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

from hearth.pairing.exchange import PairingFailed, PairingGuest, PairingHost, PairingInfo

MAX_LINE = 16 * 1024
STEP_TIMEOUT_S = 30.0
DEFAULT_PAIR_PORT = 11437


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


async def receive(reader: asyncio.StreamReader, timeout: float = STEP_TIMEOUT_S) -> Any:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError as exc:
        raise PairingFailed(f"The other side sent nothing for {timeout:.0f} s.") from exc
    except (ValueError, asyncio.LimitOverrunError) as exc:  # a line past the reader's limit
        raise PairingFailed("The other side sent a pairing message that is too long.") from exc
    if not line:
        raise PairingFailed("The other side closed the connection.")
    return decode(line)


async def send(writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
    writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


async def _tell_error(writer: asyncio.StreamWriter, exc: PairingFailed) -> None:
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        await send(writer, {"t": "error", "message": exc.message})


async def host_session(host: PairingHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Paired:
    """The host's side of one connection: answer the guest's two messages."""
    try:
        for _ in range(2):
            reply = host.receive(await receive(reader), time.time())
            await send(writer, reply)
    except PairingFailed as exc:
        host.state = "burned"  # whatever went wrong, this code has had its attempt
        await _tell_error(writer, exc)
        raise
    except (ConnectionError, OSError) as exc:
        host.state = "burned"
        raise PairingFailed(f"The connection broke during pairing: {exc}") from exc
    assert host.peer is not None and host.verifier is not None
    return Paired(host.peer, host.verifier, host.secret)


async def guest_session(guest: PairingGuest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Paired:
    try:
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


async def serve_host(host: PairingHost, bind: str, port: int, ready: asyncio.Event | None = None) -> Paired:
    """Listen until the first guest completes or spoils the code (one attempt), or the code expires.
    Connections after the first are told the code is used."""
    outcome: asyncio.Future[Paired] = asyncio.get_running_loop().create_future()
    sessions: set[asyncio.Task[None]] = set()

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            result = await host_session(host, reader, writer)
            if not outcome.done():
                outcome.set_result(result)
        except PairingFailed as exc:
            if not outcome.done() and host.state == "burned":
                outcome.set_exception(exc)
        finally:
            writer.close()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(one(reader, writer))
        sessions.add(task)
        task.add_done_callback(sessions.discard)

    try:
        server = await asyncio.start_server(accept, host=bind, port=port, limit=MAX_LINE + 1)
    except OSError as exc:
        raise PairingFailed(f"Cannot wait for the other machine on {bind}:{port}: {exc.strerror or exc}; "
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
        raise PairingFailed(f"Cannot reach the pairing host at {host}:{port}: {exc or 'timed out'}") from exc
    try:
        return await guest_session(guest, reader, writer)
    finally:
        writer.close()
