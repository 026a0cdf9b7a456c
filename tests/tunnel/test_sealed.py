"""The sealed tunnel: pure framing and keys, then real sockets on loopback, then a real ggml RPC server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.ggml.hello import HELLO_REQ, HELLO_RSP_SIZE, probe
from hearth.ggml.process import RpcServerProcess
from hearth.tunnel.sealed import (
    ABYTES,
    HEADERBYTES,
    HELLO,
    LENGTH,
    MAX_FRAME,
    MAX_PLAIN,
    NONCE_BYTES,
    Opener,
    SealedDialer,
    SealedError,
    SealedGate,
    Sealer,
    frame_length,
    lease_key,
    read_frame,
    session_keys,
)

SECRET = b"pairing-secret-0123456789abcdef!"
KEY = lease_key(SECRET, "lease-1")
OTHER = lease_key(SECRET, "lease-2")
T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(coro: Awaitable[T], timeout: float = 30) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# -- pure parts ------------------------------------------------------------------------------------


def test_lease_keys() -> None:
    assert len(KEY) == 32 and KEY == lease_key(SECRET, "lease-1")
    assert KEY != OTHER and KEY != lease_key(SECRET[::-1], "lease-1")
    for bad in (b"", b"short", bytes(65)):
        with pytest.raises(SealedError) as err:
            lease_key(bad, "lease-1")
        assert err.value.code == "sealed_tunnel"


def test_session_keys_are_directional_and_fresh() -> None:
    a, b = os.urandom(32), os.urandom(32)
    c2s, s2c = session_keys(KEY, a, b)
    assert len(c2s) == len(s2c) == 32 and c2s != s2c
    assert session_keys(KEY, a, b) == (c2s, s2c)
    assert c2s not in (*session_keys(KEY, a, os.urandom(32)), *session_keys(OTHER, a, b))
    with pytest.raises(SealedError):
        session_keys(KEY, a, b[:31])
    with pytest.raises(SealedError):
        session_keys(KEY[:31], a, b)


def split(frame: bytes) -> bytes:
    assert frame_length(frame[:4]) == len(frame) - 4
    return frame[4:]


def test_seal_open_round_trip_and_final() -> None:
    sealer = Sealer(KEY)
    frames = [sealer.seal(b"hello"), sealer.seal(os.urandom(MAX_PLAIN)), sealer.seal(b"", final=True)]
    opener = Opener(KEY, sealer.header)
    assert opener.open(split(frames[0])) == (b"hello", False)
    assert len(opener.open(split(frames[1]))[0]) == MAX_PLAIN
    assert opener.open(split(frames[2])) == (b"", True) and opener.finished
    with pytest.raises(SealedError):
        opener.open(split(frames[0]))  # nothing after the final frame
    with pytest.raises(SealedError):
        sealer.seal(b"more")
    with pytest.raises(SealedError):
        Sealer(KEY).seal(bytes(MAX_PLAIN + 1))


def test_reordered_replayed_or_foreign_frames_fail() -> None:
    sealer = Sealer(KEY)
    one, two = split(sealer.seal(b"one")), split(sealer.seal(b"two"))
    with pytest.raises(SealedError):
        Opener(KEY, sealer.header).open(two)  # reordered
    opener = Opener(KEY, sealer.header)
    opener.open(one)
    with pytest.raises(SealedError):
        opener.open(one)  # replayed
    with pytest.raises(SealedError):
        opener.open(two)  # a failure poisons the stream
    with pytest.raises(SealedError):
        Opener(OTHER, sealer.header).open(one)  # another lease's key
    with pytest.raises(SealedError):
        Opener(KEY, sealer.header[:-1])


def test_frame_length_bounds() -> None:
    assert frame_length(LENGTH.pack(ABYTES)) == ABYTES
    assert frame_length(LENGTH.pack(MAX_FRAME)) == MAX_FRAME
    for bad in (LENGTH.pack(ABYTES - 1), LENGTH.pack(MAX_FRAME + 1), LENGTH.pack(2**32 - 1), b"", b"\0\0\0"):
        with pytest.raises(SealedError):
            frame_length(bad)


@given(st.binary(max_size=8))
def test_frame_length_of_any_bytes(prefix: bytes) -> None:
    try:
        n = frame_length(prefix)
    except SealedError:
        return
    assert ABYTES <= n <= MAX_FRAME


@given(st.binary(max_size=40), st.binary(max_size=40), st.lists(st.binary(max_size=200), max_size=6))
def test_opener_fed_any_bytes_raises_only_sealed_error(key: bytes, header: bytes, frames: list[bytes]) -> None:
    try:
        opener = Opener(key, header)
    except SealedError:
        return
    for frame in frames:
        with pytest.raises(SealedError):
            opener.open(frame)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4), st.data())
def test_any_flipped_byte_is_caught(chunks: list[bytes], data: st.DataObject) -> None:
    sealer = Sealer(KEY)
    frames = [split(sealer.seal(c)) for c in chunks]
    i = data.draw(st.integers(0, len(frames) - 1))
    pos = data.draw(st.integers(0, len(frames[i]) - 1))
    bad = bytearray(frames[i])
    bad[pos] ^= data.draw(st.integers(1, 255))
    opener = Opener(KEY, sealer.header)
    for frame in frames[:i]:
        opener.open(frame)
    with pytest.raises(SealedError):
        opener.open(bytes(bad))


@given(st.binary(max_size=400))
def test_stream_of_any_bytes_raises_only_sealed_error_or_eof(stream: bytes) -> None:
    async def parse() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(stream)
        reader.feed_eof()
        try:
            opener = Opener(KEY, await reader.readexactly(HEADERBYTES))
            while True:
                opener.open(await read_frame(reader))
        except (SealedError, asyncio.IncompleteReadError):
            return

    asyncio.run(parse())


# -- sockets ---------------------------------------------------------------------------------------


class Upstream:
    """A loopback server standing in for the RPC server; counts the connections that reach it."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except ConnectionError:
            pass  # the tunnel dropped us; the test checks what arrived
        finally:
            writer.close()

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


@asynccontextmanager
async def tunnel(target_port: int, gate_key: bytes = KEY, dial_key: bytes = KEY,
                 timeout: float = 5.0) -> AsyncIterator[tuple[SealedGate, SealedDialer]]:
    gate = SealedGate("127.0.0.1", gate_key, target_port, handshake_timeout=timeout)
    await gate.start()
    dialer = SealedDialer("127.0.0.1", gate.port, dial_key)
    await dialer.start()
    try:
        yield gate, dialer
    finally:
        await dialer.close()
        await gate.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything until EOF or reset (an aborted connection may end either way)."""
    got = bytearray()
    try:
        while data := await reader.read(1 << 16):
            got += data
    except ConnectionError:
        pass  # a reset is as closed as an EOF here
    return bytes(got)


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def send_all(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
    writer.write_eof()


def test_megabytes_both_ways_and_eof_each_way() -> None:
    up, down = os.urandom(3 << 20), os.urandom((5 << 20) + 7)
    got: list[bytes] = []

    async def upstream_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received, _ = await asyncio.gather(reader.read(), send_all(writer, down))
        got.append(received)

    async def main() -> None:
        async with Upstream(upstream_side) as upstream, tunnel(upstream.port) as (gate, dialer):
            assert dialer.endpoint == f"127.0.0.1:{dialer.port}"
            reader, writer = await asyncio.open_connection("127.0.0.1", dialer.port)
            received, _ = await asyncio.gather(reader.read(), send_all(writer, up))
            writer.close()
            assert received == down  # the upstream's EOF reached the client
            await eventually(lambda: bool(got))
            assert got == [up]  # and the client's EOF reached the upstream
            assert (gate.bytes_in, gate.bytes_out) == (len(up), len(down))
            assert (dialer.bytes_out, dialer.bytes_in) == (len(up), len(down))
            assert gate.refused == dialer.refused == 0

    run(main())


def test_half_close_reaches_the_far_side_and_the_reply_still_flows() -> None:
    async def digest_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # only returns once the client's half-close arrives
        writer.write(hashlib.sha256(data).digest())

    async def main() -> None:
        async with Upstream(digest_after_eof) as upstream, tunnel(upstream.port) as (_, dialer):
            payload = os.urandom(300_000)
            reader, writer = await asyncio.open_connection("127.0.0.1", dialer.port)
            await send_all(writer, payload)
            assert await reader.read() == hashlib.sha256(payload).digest()
            writer.close()

    run(main())


def test_wrong_key_is_refused_before_the_upstream() -> None:
    async def main() -> None:
        async with Upstream(echo) as upstream, tunnel(upstream.port, dial_key=OTHER) as (gate, dialer):
            reader, writer = await asyncio.open_connection("127.0.0.1", dialer.port)
            writer.write(b"x" * 1000)
            assert await read_until_closed(reader) == b""
            writer.close()
            await eventually(lambda: gate.refused == 1 and dialer.refused == 1)
            assert upstream.connections == 0 and gate.bytes_in == 0

    run(main())


async def scripted_client(port: int, key: bytes, hello: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The client side of the protocol, written from the module docstring."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    nonce_c = os.urandom(NONCE_BYTES)
    writer.write(nonce_c)
    c2s, _ = session_keys(key, nonce_c, await reader.readexactly(NONCE_BYTES))
    sealer = Sealer(c2s)
    writer.write(sealer.header + sealer.seal(hello))
    return reader, writer


def test_a_client_written_from_the_docstring_is_admitted() -> None:
    async def main() -> None:
        async with Upstream(echo) as upstream, tunnel(upstream.port) as (gate, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", gate.port)
            nonce_c = os.urandom(NONCE_BYTES)
            writer.write(nonce_c)
            c2s, s2c = session_keys(KEY, nonce_c, await reader.readexactly(NONCE_BYTES))
            sealer = Sealer(c2s)
            writer.write(sealer.header + sealer.seal(HELLO) + sealer.seal(b"ping"))
            opener = Opener(s2c, await reader.readexactly(HEADERBYTES))
            assert opener.open(await read_frame(reader)) == (HELLO, False)
            assert opener.open(await read_frame(reader)) == (b"ping", False)
            writer.write(sealer.seal(b"", final=True))
            writer.write_eof()
            assert opener.open(await read_frame(reader)) == (b"", True)
            assert await reader.read() == b""
            writer.close()
            assert upstream.connections == 1 and gate.refused == 0

    run(main())


@pytest.mark.parametrize("payload, eof", [
    (b"GET / HTTP/1.1\r\nHost: node\r\n\r\n" * 4, False),  # oversize frame length: refused without waiting
    (bytes(range(256)) * 4, True),
    (os.urandom(NONCE_BYTES + 10), True),  # truncated handshake
    (os.urandom(NONCE_BYTES) + os.urandom(HEADERBYTES) + LENGTH.pack(ABYTES - 1), False),
    (os.urandom(NONCE_BYTES) + os.urandom(HEADERBYTES) + LENGTH.pack(MAX_FRAME + 1), False),
    (os.urandom(NONCE_BYTES) + os.urandom(HEADERBYTES) + LENGTH.pack(100) + os.urandom(100), False),
], ids=["http", "garbage", "truncated", "short-frame", "long-frame", "forged-hello"])
def test_bad_handshakes_are_refused_at_once(payload: bytes, eof: bool) -> None:
    async def main() -> None:
        async with Upstream(echo) as upstream, tunnel(upstream.port, timeout=5.0) as (gate, _):
            start = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", gate.port)
            writer.write(payload)
            if eof:
                writer.write_eof()
            answer = await read_until_closed(reader)
            writer.close()
            assert time.monotonic() - start < 2.0, "refused only by the timeout"
            assert len(answer) <= NONCE_BYTES  # the gate's nonce at most: no header, no frame
            await eventually(lambda: gate.refused == 1)
            assert upstream.connections == 0 and gate.bytes_in == 0

    run(main())


@pytest.mark.parametrize("key, hello", [(OTHER, HELLO), (KEY, b"hearth-sealed-v0"), (KEY, HELLO + b"!")],
                         ids=["other-lease", "old-hello", "long-hello"])
def test_wrong_key_or_hello_from_a_well_formed_client_is_refused(key: bytes, hello: bytes) -> None:
    async def main() -> None:
        async with Upstream(echo) as upstream, tunnel(upstream.port) as (gate, _):
            reader, writer = await scripted_client(gate.port, key, hello)
            writer.write(b"more data that must not pass")
            assert await read_until_closed(reader) == b""
            writer.close()
            await eventually(lambda: gate.refused == 1)
            assert upstream.connections == 0

    run(main())


def test_a_silent_client_is_refused_after_the_timeout() -> None:
    async def main() -> None:
        async with Upstream(echo) as upstream, tunnel(upstream.port, timeout=0.3) as (gate, _):
            start = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", gate.port)
            assert await read_until_closed(reader) == b""
            writer.close()
            assert 0.25 < time.monotonic() - start < 2.0
            assert gate.refused == 1 and upstream.connections == 0

            # A client that stalls after the nonce exchange is cut off the same way.
            reader, writer = await asyncio.open_connection("127.0.0.1", gate.port)
            writer.write(os.urandom(NONCE_BYTES))
            assert len(await read_until_closed(reader)) == NONCE_BYTES
            writer.close()
            assert gate.refused == 2 and upstream.connections == 0

    run(main())


async def tampering_proxy(target: int, flip_at: int) -> asyncio.Server:
    """Forwards to `target`, flipping one byte of the client-to-server stream at offset `flip_at`."""

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, flip: bool) -> None:
        seen = 0
        try:
            while data := await src.read(1 << 16):
                if flip and seen <= flip_at < seen + len(data):
                    buf = bytearray(data)
                    buf[flip_at - seen] ^= 0x01
                    data = bytes(buf)
                seen += len(data)
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass  # either side hung up; the finally below closes ours
        finally:
            dst.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    return await asyncio.start_server(accept, "127.0.0.1", 0)


def test_a_tampered_byte_mid_stream_closes_both_sides() -> None:
    got: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await read_until_closed(reader))

    async def main() -> None:
        async with Upstream(record) as upstream:
            gate = SealedGate("127.0.0.1", KEY, upstream.port)
            await gate.start()
            proxy = await tampering_proxy(gate.port, flip_at=200_000)
            dialer = SealedDialer("127.0.0.1", int(proxy.sockets[0].getsockname()[1]), KEY)
            await dialer.start()
            try:
                payload = os.urandom(1 << 20)
                reader, writer = await asyncio.open_connection("127.0.0.1", dialer.port)
                writer.write(payload)  # no EOF from us: only the tampering can end this connection
                assert await asyncio.wait_for(read_until_closed(reader), 5) == b""
                writer.close()
                await eventually(lambda: bool(got))
                assert 0 < len(got[0]) < 200_000 and payload.startswith(got[0])  # whole frames before it only
                assert gate.bytes_in == len(got[0])
            finally:
                await dialer.close()
                proxy.close()
                await gate.close()

    run(main())


@pytest.mark.parametrize("side", ["gate", "dialer"])
def test_close_aborts_live_connections_within_a_second(side: str) -> None:
    ended: list[float] = []

    async def echo_then_note(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await echo(reader, writer)
        ended.append(time.monotonic())

    async def main() -> None:
        async with Upstream(echo_then_note) as upstream, tunnel(upstream.port) as (gate, dialer):
            reader, writer = await asyncio.open_connection("127.0.0.1", dialer.port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            start = time.monotonic()
            await (gate if side == "gate" else dialer).close()
            assert await asyncio.wait_for(read_until_closed(reader), 1.0) == b""
            writer.close()
            assert time.monotonic() - start < 1.0
            await eventually(lambda: bool(ended), timeout=1.0)  # the RPC server's side is dropped too
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", gate.port if side == "gate" else dialer.port)

    run(main())


def test_the_dialer_gives_up_on_an_unreachable_gate() -> None:
    async def main() -> None:
        async with Upstream(echo) as upstream, tunnel(upstream.port) as (gate, _):
            await gate.close()
            dialer = SealedDialer("127.0.0.1", gate.port, KEY)
            await dialer.start()
            reader, writer = await asyncio.open_connection("127.0.0.1", dialer.port)
            assert await read_until_closed(reader) == b""
            writer.close()
            await dialer.close()
            assert dialer.refused == 1

    run(main())


# -- a real ggml RPC server ------------------------------------------------------------------------


@pytest.mark.slow
def test_rpc_hello_through_the_tunnel_matches_direct(tmp_path: Path) -> None:
    server = RpcServerProcess("127.0.0.1", threads=1, log_path=tmp_path / "rpc.log")
    try:
        direct = server.start()

        async def main() -> tuple[object, int, int]:
            async with tunnel(server.port) as (gate, dialer):
                host, port = dialer.endpoint.rsplit(":", 1)
                version = await asyncio.to_thread(probe, host, int(port))
                return version, gate.bytes_in, gate.bytes_out

        version, bytes_in, bytes_out = run(main())
        assert version == direct
        assert bytes_in == len(HELLO_REQ) and bytes_out == 8 + HELLO_RSP_SIZE
        assert server.alive and probe("127.0.0.1", server.port) == direct  # still serving after the tunnel
    finally:
        server.stop()
