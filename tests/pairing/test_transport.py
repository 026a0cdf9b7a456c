"""The pairing exchange over real TCP on loopback: direct, through a rendezvous, and with bad input."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.identity import NodeIdentity
from hearth.net.b64 import encode as b64
from hearth.pairing import transport
from hearth.pairing.codes import make_code, parse_code
from hearth.pairing.exchange import PairingFailed, PairingGuest, PairingHost, PairingInfo
from hearth.pairing.rendezvous import Rendezvous, meet, parse_meet
from hearth.pairing.transport import MAX_LINE, decode, guest_session, host_session, join, serve_host
from hearth.tunnel.wireguard import tunnel_address
from tests.conftest import free_port


def info(tmp: Path, name: str) -> PairingInfo:
    ident = NodeIdentity.load_or_create(tmp / name)
    return PairingInfo(name, b64(ident.public_key), b64(os.urandom(32)), tunnel_address(ident.public_key),
                       ("127.0.0.1:51820",), 11436)


def host_and_guest(tmp: Path, guest_code: str | None = None) -> tuple[PairingHost, PairingGuest]:
    code = make_code(42)
    n, norm = parse_code(code)
    return (PairingHost(norm, n, info(tmp, "den"), now=time.time()),
            PairingGuest(guest_code or norm, n, info(tmp, "attic")))


async def direct(host: PairingHost, guest: PairingGuest) -> tuple[Any, Any]:
    port = free_port()
    ready = asyncio.Event()
    served = asyncio.create_task(serve_host(host, "127.0.0.1", port, ready))
    await ready.wait()
    results = await asyncio.gather(served, join(guest, "127.0.0.1", port), return_exceptions=True)
    return results[0], results[1]


def test_pairing_over_tcp(tmp_path: Path) -> None:
    host, guest = host_and_guest(tmp_path)
    h, g = asyncio.run(direct(host, guest))
    assert h.peer.name == "attic" and g.peer.name == "den"
    assert h.verifier == g.verifier and h.secret == g.secret and len(h.secret) == 32


def test_a_wrong_code_over_tcp_burns_the_code_on_both_sides(tmp_path: Path) -> None:
    host, guest = host_and_guest(tmp_path, guest_code="42-acre-honey")
    h, g = asyncio.run(direct(host, guest))
    assert isinstance(g, PairingFailed) and "Wrong code" in g.message
    assert isinstance(h, PairingFailed) and host.state == "burned"


def test_connections_that_never_attempt_the_exchange_leave_the_code_usable(tmp_path: Path) -> None:
    """mDNS tells the whole LAN the pairing port: a bare connect, garbage, a cut-off line, a
    message for another nameplate or bytes that are not a curve point must not burn the code."""
    host, guest = host_and_guest(tmp_path)
    stranger = PairingGuest("41-acre-honey", 41, info(tmp_path, "stranger")).start()  # nameplate 41, not 42

    async def scenario() -> tuple[list[bytes], Any, Any]:
        port = free_port()
        ready = asyncio.Event()
        served = asyncio.create_task(serve_host(host, "127.0.0.1", port, ready))
        await ready.wait()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()  # connect and close, nothing said
        await writer.wait_closed()
        answers = []
        for line in (b"GET / HTTP/1.1\r\n\r\n", b'{"t":"pake","nameplate":42', json.dumps(stranger).encode() + b"\n",
                     b'{"t":"pake","nameplate":42,"msg":"QgAAAA"}\n', b'{"t":"error","message":"bye"}\n',
                     b'{"t":"pake","nameplate":42,"msg":"QgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC"}\n',  # off the curve
                     b'{"t":"pake","nameplate":42,"msg":"QgEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB"}\n'):  # small order
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(line)
            writer.write_eof()
            answers.append(await asyncio.wait_for(reader.read(), 10))
            writer.close()
        results = await asyncio.gather(served, join(guest, "127.0.0.1", port), return_exceptions=True)
        return answers, results[0], results[1]

    answers, h, g = asyncio.run(scenario())
    assert all(json.loads(a)["t"] == "error" for a in answers), answers
    assert not isinstance(h, BaseException) and not isinstance(g, BaseException), (h, g)
    assert h.peer.name == "attic" and g.peer.name == "den" and h.verifier == g.verifier


def test_idle_connections_are_bounded_in_time_and_per_address(tmp_path: Path) -> None:
    """A silent connection is dropped after the first-message timeout; one address holds at most
    MAX_CONNECTIONS_PER_ADDRESS at once (more are closed at once) while others still pair."""
    host, guest = host_and_guest(tmp_path)

    async def scenario() -> tuple[float, bytes, Any, Any]:
        port = free_port()
        ready = asyncio.Event()
        served = asyncio.create_task(serve_host(host, "127.0.0.1", port, ready, first_timeout=1.0))
        await ready.wait()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.monotonic()
        await asyncio.wait_for(reader.read(), 10)  # the host gives up on it
        held = time.monotonic() - start
        writer.close()
        idle = [await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
                for _ in range(transport.MAX_CONNECTIONS_PER_ADDRESS)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        refused = await asyncio.wait_for(reader.read(), 0.5)  # closed at once, not after the timeout
        writer.close()
        results = await asyncio.gather(served, join(guest, "127.0.0.1", port), return_exceptions=True)
        for _, w in idle:
            w.close()
        return held, refused, results[0], results[1]

    held, refused, h, g = asyncio.run(scenario())
    assert 0.9 < held < 3.0, held
    assert b"Too many connections" in refused
    assert not isinstance(h, BaseException) and not isinstance(g, BaseException), (h, g)
    assert host.state == "done"


def test_an_expired_code_stops_waiting(tmp_path: Path) -> None:
    n, norm = parse_code(make_code(1))
    host = PairingHost(norm, n, info(tmp_path, "den"), now=time.time(), ttl=0.3)
    with pytest.raises(PairingFailed, match="expired"):
        asyncio.run(serve_host(host, "127.0.0.1", free_port()))


def test_pairing_through_a_rendezvous(tmp_path: Path) -> None:
    host, guest = host_and_guest(tmp_path)

    async def scenario() -> tuple[Any, Any, int, dict[int, Any]]:
        rv = Rendezvous("127.0.0.1", 0)
        port = await rv.start()
        try:
            async def host_side() -> Any:
                reader, writer, observed = await meet("127.0.0.1", port, 42, "host")
                assert observed.startswith("127.0.0.1:")
                try:
                    return await host_session(host, reader, writer)
                finally:
                    writer.close()

            hosting = asyncio.create_task(host_side())
            while 42 not in rv.waiting:
                await asyncio.sleep(0.01)
            # A second host cannot take the same nameplate; a guest for another nameplate finds nobody.
            with pytest.raises(PairingFailed, match="already waits"):
                await meet("127.0.0.1", port, 42, "host")
            with pytest.raises(PairingFailed, match="No host waits"):
                await meet("127.0.0.1", port, 43, "guest", first=PairingGuest("43-acre-acre", 43, guest.me).start())
            reader, writer, _ = await meet("127.0.0.1", port, 42, "guest", first=guest.start())
            try:
                g = await guest_session(guest, reader, writer)
            finally:
                writer.close()
            h = await hosting
            return h, g, rv.spliced, dict(rv.waiting)
        finally:
            await rv.close()

    h, g, spliced, waiting = asyncio.run(scenario())
    assert h.verifier == g.verifier and h.secret == g.secret and spliced == 1 and waiting == {}


def test_a_rendezvous_refuses_malformed_meets() -> None:
    async def scenario() -> list[bytes]:
        rv = Rendezvous("127.0.0.1", 0)
        port = await rv.start()
        answers = []
        try:
            for line in (b"{}\n", b"not json\n", b'{"t":"meet","nameplate":10000,"side":"host"}\n', b'{"t":"meet","nameplate":0,"side":"host"}\n',
                         b'{"t":"meet","nameplate":1,"side":"both"}\n', b"x" * (MAX_LINE + 10) + b"\n"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(line)
                answers.append(await reader.readline())
                writer.close()
            return answers
        finally:
            await rv.close()

    for answer in asyncio.run(scenario()):
        assert json.loads(answer)["t"] == "error"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200).map(lambda b: b + b"\n"), st.binary(max_size=50),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                              lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                              max_leaves=8).map(lambda v: json.dumps(v).encode() + b"\n")))
def test_received_lines_parse_or_fail_cleanly(line: bytes) -> None:
    try:
        decode(line)
    except PairingFailed:
        pass


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.sampled_from(["t", "nameplate", "side", "x"]), c, max_size=4), max_leaves=8))
def test_meet_messages_parse_or_fail_cleanly(msg: Any) -> None:
    try:
        nameplate, side = parse_meet(msg)
    except PairingFailed:
        return
    assert 0 < nameplate <= 9999 and side in ("host", "guest")
