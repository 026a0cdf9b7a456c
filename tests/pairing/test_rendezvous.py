"""A rendezvous under squatting and scanning, over real TCP on loopback: strangers pay, pairing works.

Strangers come from other loopback addresses (127.0.0.2 and up: Linux answers the whole 127/8 on
lo), so per-address limits see them apart from the people pairing, who come from 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hearth.identity import NodeIdentity
from hearth.net.b64 import encode as b64
from hearth.pairing import rendezvous as rendezvous_module
from hearth.pairing.codes import make_code, parse_code
from hearth.pairing.exchange import PairingFailed, PairingGuest, PairingHost, PairingInfo
from hearth.pairing.rendezvous import GUESSES_PER_MINUTE, HOSTS_PER_ADDRESS, Rendezvous, meet
from hearth.pairing.transport import Paired, guest_session, host_session
from hearth.tunnel.wireguard import tunnel_address


def info(tmp: Path, name: str) -> PairingInfo:
    ident = NodeIdentity.load_or_create(tmp / name)
    return PairingInfo(name, b64(ident.public_key), b64(os.urandom(32)), tunnel_address(ident.public_key),
                       ("127.0.0.1:51820",), 11436)


def line(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode() + b"\n"


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def stranger(port: int, source: str, *lines: bytes) -> bytes:
    """Connect from `source`, say `lines`, hang up our side, and return what the rendezvous answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        for data in lines:
            writer.write(data)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


class Pairing:
    """One real host waiting through the rendezvous, and the guest who knows its code."""

    def __init__(self, tmp: Path, port: int, nameplate: int) -> None:
        self.port, self.nameplate = port, nameplate
        self.code = parse_code(make_code(nameplate))[1]
        self.host = PairingHost(self.code, nameplate, info(tmp, f"host{nameplate}"), now=time.time())
        self.guest_info = info(tmp, f"guest{nameplate}")
        self.hosting = asyncio.create_task(self._host())

    async def _host(self) -> Paired:
        reader, writer, _ = await meet("127.0.0.1", self.port, self.nameplate, "host")
        try:
            return await host_session(self.host, reader, writer)
        finally:
            writer.close()

    async def guest(self, code: str | None = None) -> tuple[Any, Any]:
        """The guest pairs (from 127.0.0.1); both sides' outcomes, exceptions included."""
        guest = PairingGuest(code or self.code, self.nameplate, self.guest_info)

        async def run() -> Paired:
            reader, writer, _ = await meet("127.0.0.1", self.port, self.nameplate, "guest", first=guest.start())
            try:
                return await guest_session(guest, reader, writer)
            finally:
                writer.close()

        g = await asyncio.gather(run(), return_exceptions=True)
        h = await asyncio.gather(self.hosting, return_exceptions=True)
        return h[0], g[0]


def paired(outcomes: tuple[Any, Any]) -> bool:
    h, g = outcomes
    return isinstance(h, Paired) and isinstance(g, Paired) and h.verifier == g.verifier


def test_hosts_from_closed_sockets_hold_no_nameplate(tmp_path: Path) -> None:
    """Squatting: 64 "host" lines from sockets closed at once (64 addresses, so no per-address
    limit helps) used to fill every place for 5 minutes; now each nameplate is freed at once."""
    async def scenario() -> tuple[Any, Any]:
        rv = Rendezvous("127.0.0.1", 0, max_waiting=64)
        port = await rv.start()
        try:
            await asyncio.gather(*(stranger(port, f"127.0.0.{10 + i}", line({"t": "meet", "nameplate": 100 + i,
                                                                             "side": "host"}))
                                   for i in range(64)))
            await until(lambda: not rv.waiting)
            pairing = Pairing(tmp_path, port, 7)
            await until(lambda: 7 in rv.waiting)
            return await pairing.guest()
        finally:
            await rv.close()

    assert paired(asyncio.run(scenario()))


def test_one_address_keeps_few_hosts_waiting(tmp_path: Path) -> None:
    """Squatting with open sockets: one address gets HOSTS_PER_ADDRESS places, no more."""
    async def scenario() -> tuple[int, list[bytes], tuple[Any, Any]]:
        rv = Rendezvous("127.0.0.1", 0)
        port = await rv.start()
        squatters = []
        try:
            for n in range(1, 11):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
                writer.write(line({"t": "meet", "nameplate": n, "side": "host"}))
                squatters.append((reader, writer))
            await until(lambda: len(rv.waiting) == HOSTS_PER_ADDRESS and rv.connections.all == HOSTS_PER_ADDRESS)
            refused = [await asyncio.wait_for(r.read(), 5) for r, _ in squatters[HOSTS_PER_ADDRESS:]]
            held = len(rv.waiting)
            pairing = Pairing(tmp_path, port, 500)
            await until(lambda: 500 in rv.waiting)
            return held, refused, await pairing.guest()
        finally:
            for _, writer in squatters:
                writer.close()
            await rv.close()

    held, refused, outcomes = asyncio.run(scenario())
    assert held == HOSTS_PER_ADDRESS
    assert all(json.loads(r)["t"] == "error" for r in refused), refused
    assert paired(outcomes)


def test_a_nameplate_scan_costs_the_scanner_not_the_people_pairing(tmp_path: Path) -> None:
    """Scanning: a stranger claimed nameplates 1..999 as guest and burned every waiting code in
    under a second. Now a guest reaches a host only with a real key-exchange attempt, and one
    address makes GUESSES_PER_MINUTE guest meets a minute; hosts at 5 and 500 survive both a
    bare scan (which passes nameplate 5) and a scan of real wrong guesses, then pair."""
    async def scenario() -> tuple[list[bytes], list[bytes], int, float, tuple[Any, Any], tuple[Any, Any]]:
        rv = Rendezvous("127.0.0.1", 0)
        port = await rv.start()
        try:
            five, five_hundred = Pairing(tmp_path, port, 5), Pairing(tmp_path, port, 500)
            await until(lambda: {5, 500} <= set(rv.waiting))
            start = time.monotonic()
            bare = [await stranger(port, "127.0.0.2", line({"t": "meet", "nameplate": n, "side": "guest"}))
                    for n in range(1, 1000)]
            guess = PairingGuest("1-acre-acre", 1, info(tmp_path, "scanner")).start()  # a real point; the
            guesses = [await stranger(port, "127.0.0.4",  # rendezvous cannot tell which code it guesses
                                      line({"t": "meet", "nameplate": n, "side": "guest"}), line(guess | {"nameplate": n}))
                       for n in range(999, 0, -1)]
            took = time.monotonic() - start
            waiting = len(rv.waiting)
            return bare, guesses, waiting, took, await five.guest(), await five_hundred.guest()
        finally:
            await rv.close()

    bare, guesses, waiting, took, five, five_hundred = asyncio.run(scenario())
    for answers in (bare, guesses):
        throttled = [a for a in answers if b"attempts a minute" in a]
        assert len(throttled) == 999 - GUESSES_PER_MINUTE, len(throttled)
    assert all(b"No host waits" in a for a in guesses[:GUESSES_PER_MINUTE]), guesses[:GUESSES_PER_MINUTE]
    assert waiting == 2, "both hosts still wait after the scans"
    assert paired(five) and paired(five_hundred)
    print(f"two scans of 999 nameplates took {took:.2f} s")


def test_a_guest_that_never_attempts_never_reaches_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a meet, garbage, a close, a message for another nameplate or silence never touch the host."""
    monkeypatch.setattr(rendezvous_module, "PAKE_TIMEOUT_S", 0.3)

    async def scenario() -> tuple[list[bytes], tuple[Any, Any]]:
        rv = Rendezvous("127.0.0.1", 0)
        port = await rv.start()
        try:
            pairing = Pairing(tmp_path, port, 9)
            await until(lambda: 9 in rv.waiting)
            meet9 = line({"t": "meet", "nameplate": 9, "side": "guest"})
            other = PairingGuest("8-acre-acre", 8, info(tmp_path, "x")).start()
            answers = [await stranger(port, "127.0.0.5", meet9, b"garbage\n"),
                       await stranger(port, "127.0.0.5", meet9),
                       await stranger(port, "127.0.0.5", meet9, line(other))]
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.5", 0))
            writer.write(meet9)  # and then silence
            answers.append(await asyncio.wait_for(reader.read(), 5))
            writer.close()
            assert 9 in rv.waiting and rv.spliced == 0
            return answers, await pairing.guest()
        finally:
            await rv.close()

    answers, outcomes = asyncio.run(scenario())
    assert all(json.loads(a)["t"] == "error" for a in answers), answers
    assert paired(outcomes)


def test_a_wrong_guess_through_the_rendezvous_still_burns_the_code(tmp_path: Path) -> None:
    """SPAKE2's one guess per code is kept: a real wrong attempt spends the code."""
    async def scenario() -> tuple[tuple[Any, Any], str]:
        rv = Rendezvous("127.0.0.1", 0)
        port = await rv.start()
        try:
            pairing = Pairing(tmp_path, port, 11)
            await until(lambda: 11 in rv.waiting)
            outcomes = await pairing.guest("11-acre-acre" if pairing.code != "11-acre-acre" else "11-acre-dove")
            return outcomes, pairing.host.state
        finally:
            await rv.close()

    (h, g), state = asyncio.run(scenario())
    assert isinstance(g, PairingFailed) and "Wrong code" in g.message
    assert isinstance(h, PairingFailed) and state == "burned"
