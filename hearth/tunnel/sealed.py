"""A sealed TCP tunnel for one lease's ggml RPC byte stream, for nodes without WireGuard (no root).

The RPC server has no authentication or encryption. A `SealedGate` on the node admits only clients
that prove the lease key and forwards plaintext to the loopback RPC server; a `SealedDialer` on the
orchestrator is the loopback endpoint llama.cpp connects to, and seals each connection to the gate.

Protocol, per TCP connection (client = dialer, server = gate; key = `lease_key(secret, lease_id)`):

1. The client sends 32 random bytes nonce_c; the server answers 32 random bytes nonce_s.
2. Directional keys: k_c2s = blake2b(b"c2s" + nonce_c + nonce_s, key=key, digest_size=32), and k_s2c
   likewise with b"s2c". Fresh nonces from both sides make every connection's keys new (no replay), and
   the labels keep one direction's frames from being reflected into the other.
3. Each direction is one crypto_secretstream_xchacha20poly1305 stream: its 24-byte header, then frames
   of a 4-byte big-endian ciphertext length (ABYTES to 64 KiB + ABYTES, checked before the ciphertext
   is read) followed by the ciphertext. Plaintext chunks are at most 64 KiB.
4. The client sends its header and the frame HELLO. The server connects to the RPC server only once
   that frame decrypts and matches, then sends its own header and HELLO; then data flows.
5. A plaintext EOF is sent as an empty TAG_FINAL frame followed by a TCP half-close, and becomes a
   half-close on the far plaintext side. A TCP EOF without TAG_FINAL (truncation), a frame that fails to
   decrypt, or a bad length aborts both sides of the connection.

The gate closes a connection whose handshake fails or does not finish within `HANDSHAKE_TIMEOUT`
seconds and counts it in `refused`; not a byte of it reaches the RPC server.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from collections.abc import AsyncIterator

from nacl import bindings as sodium
from nacl.exceptions import CryptoError

from hearth.errors import LinkFailed
from hearth.net.endpoint import Endpoint
from hearth.net.pump import CHUNK, chunks, nodelay, pump

ABYTES: int = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
HEADERBYTES: int = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
KEYBYTES: int = sodium.crypto_secretstream_xchacha20poly1305_KEYBYTES
TAG_MESSAGE: int = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL: int = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
NONCE_BYTES = 32
MAX_PLAIN = CHUNK
MAX_FRAME = MAX_PLAIN + ABYTES
LENGTH = struct.Struct(">I")
HELLO = b"hearth-sealed-v1"
LEASE_LABEL = b"hearth-sealed-lease"
HANDSHAKE_TIMEOUT = 10.0


class SealedError(LinkFailed):
    """A sealed tunnel connection was refused or broken: check that both machines hold the same pairing
    secret and lease id, and that nothing between them rewrites traffic; then reconnect."""

    code = "sealed_tunnel"


# -- pure parts: keys, frame lengths, one direction's stream state --------------------------------


def _check_key(key: bytes) -> None:
    if len(key) != KEYBYTES:
        raise SealedError(f"A sealed tunnel key is {KEYBYTES} bytes, not {len(key)}.")


def lease_key(secret: bytes, lease_id: str) -> bytes:
    """32-byte key for one lease: blake2b keyed with the pairing secret over LEASE_LABEL + lease_id."""
    if not 16 <= len(secret) <= 64:
        raise SealedError(f"The pairing secret must be 16 to 64 bytes, not {len(secret)}; pair again.")
    return hashlib.blake2b(LEASE_LABEL + lease_id.encode(), key=secret, digest_size=KEYBYTES).digest()


def session_keys(key: bytes, nonce_c: bytes, nonce_s: bytes) -> tuple[bytes, bytes]:
    """(client-to-server, server-to-client) keys for one connection."""
    _check_key(key)
    if len(nonce_c) != NONCE_BYTES or len(nonce_s) != NONCE_BYTES:
        raise SealedError("A sealed tunnel nonce has the wrong length.")
    c2s, s2c = (hashlib.blake2b(label + nonce_c + nonce_s, key=key, digest_size=KEYBYTES).digest()
                for label in (b"c2s", b"s2c"))
    return c2s, s2c


def frame_length(prefix: bytes) -> int:
    """The ciphertext length a 4-byte frame prefix announces, refused if out of bounds."""
    if len(prefix) != LENGTH.size:
        raise SealedError("A sealed frame length is 4 bytes.")
    (n,) = LENGTH.unpack(prefix)
    if not ABYTES <= n <= MAX_FRAME:
        raise SealedError(f"A sealed frame of {n} bytes is out of bounds.")
    return int(n)


class Sealer:
    """Encrypts one direction: send `header` first, then each `seal()` result."""

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self.header: bytes = sodium.crypto_secretstream_xchacha20poly1305_init_push(self._state, key)
        self.finished = False

    def seal(self, plaintext: bytes, final: bool = False) -> bytes:
        """One frame: length prefix and ciphertext."""
        if self.finished:
            raise SealedError("The sealed stream already sent its final frame.")
        if len(plaintext) > MAX_PLAIN:
            raise SealedError(f"A sealed frame holds at most {MAX_PLAIN} bytes.")
        self.finished = final
        ct = sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, plaintext, tag=TAG_FINAL if final else TAG_MESSAGE)
        return LENGTH.pack(len(ct)) + ct


class Opener:
    """Decrypts one direction from the peer's header; any failure poisons it."""

    def __init__(self, key: bytes, header: bytes) -> None:
        _check_key(key)
        if len(header) != HEADERBYTES:
            raise SealedError("A sealed stream header has the wrong length.")
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        try:
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, bytes(header), key)
        except CryptoError as exc:
            raise SealedError("The sealed stream header was refused.") from exc
        self.finished = False
        self._broken = False

    def open(self, ciphertext: bytes) -> tuple[bytes, bool]:
        """(plaintext, final) for one frame's ciphertext (without its length prefix)."""
        if self._broken or self.finished:
            raise SealedError("The sealed stream is finished or broken; no more frames.")
        if not ABYTES <= len(ciphertext) <= MAX_FRAME:
            self._broken = True
            raise SealedError(f"A sealed frame of {len(ciphertext)} bytes is out of bounds.")
        try:
            plaintext, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(self._state, bytes(ciphertext))
        except CryptoError as exc:
            self._broken = True
            raise SealedError("A sealed frame failed to decrypt: wrong key, or the data was altered.") from exc
        if tag not in (TAG_MESSAGE, TAG_FINAL):
            self._broken = True
            raise SealedError(f"A sealed frame has an unexpected tag {tag}.")
        self.finished = tag == TAG_FINAL
        return plaintext, self.finished


# -- asyncio sockets -------------------------------------------------------------------------------

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]  # one TCP connection
LINK_ERRORS = (SealedError, asyncio.IncompleteReadError, ConnectionError, OSError)  # TimeoutError is an OSError


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    return await reader.readexactly(frame_length(await reader.readexactly(LENGTH.size)))


def _abort(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.transport.abort()


def _check_hello(opened: tuple[bytes, bool]) -> None:
    if opened != (HELLO, False):
        raise SealedError("The sealed tunnel peer did not say hello.")


class _Tunnel:
    """Listener plus live connections; each connection pumps sealed frames one way and plaintext the other.

    bytes_in counts plaintext opened from the tunnel, bytes_out plaintext sealed into it.
    """

    def __init__(self, key: bytes, handshake_timeout: float) -> None:
        _check_key(key)
        self.key = key
        self.handshake_timeout = handshake_timeout
        self.port = 0
        self.refused = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._server: asyncio.Server | None = None
        self._live: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}
        self._closed = False

    async def _listen(self, host: str) -> int:
        self._server = await asyncio.start_server(self._accept, host=host, port=0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A task of our own per connection, so close() can cancel it (cancelling the task asyncio
        # makes for a coroutine callback logs a spurious error on Python 3.11).
        if self._closed:
            writer.transport.abort()
            return
        writers = [writer]
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer, writers))
        self._live[task] = writers
        task.add_done_callback(self._live.pop)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          writers: list[asyncio.StreamWriter]) -> None:
        nodelay(writer)
        try:
            await self._serve(reader, writer, writers)
        finally:
            for w in writers:
                w.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     writers: list[asyncio.StreamWriter]) -> None:
        raise NotImplementedError

    async def _pump(self, plain: Stream, sealed: Stream, sealer: Sealer, opener: Opener,
                    writers: list[asyncio.StreamWriter]) -> None:
        # Any link error aborts both sides: a cut must not reach the RPC server as a clean end.
        def abort() -> None:
            _abort(writers)

        await asyncio.gather(pump(self._sealed(plain[0], sealer), sealed[1], broken=abort, breaks=LINK_ERRORS),
                             pump(self._opened(sealed[0], opener), plain[1], broken=abort, breaks=LINK_ERRORS))

    async def _sealed(self, src: asyncio.StreamReader, sealer: Sealer) -> AsyncIterator[bytes]:
        """Plaintext read from `src` as frames, then the final frame at its EOF."""
        async for data in chunks(src, MAX_PLAIN):
            self.bytes_out += len(data)
            yield sealer.seal(data)
        yield sealer.seal(b"", final=True)

    async def _opened(self, src: asyncio.StreamReader, opener: Opener) -> AsyncIterator[bytes]:
        """Plaintext of the frames read from `src` up to the final one; a bad frame or an EOF
        without it (truncation) raises."""
        final = False
        while not final:
            data, final = opener.open(await read_frame(src))
            if data:
                self.bytes_in += len(data)
                yield data

    async def close(self) -> None:
        """Stop accepting and abort every live connection at once."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        for writers in self._live.values():
            _abort(writers)
        tasks = list(self._live)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class SealedGate(_Tunnel):
    """Node side: listens on `bind`, admits clients proving `key`, forwards to 127.0.0.1:target_port."""

    def __init__(self, bind: str, key: bytes, target_port: int, *,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        super().__init__(key, handshake_timeout)
        self.bind = bind
        self.target_port = target_port

    async def start(self) -> int:
        return await self._listen(self.bind)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[Sealer, Opener]:
        nonce_c = await reader.readexactly(NONCE_BYTES)
        nonce_s = os.urandom(NONCE_BYTES)
        writer.write(nonce_s)
        await writer.drain()
        c2s, s2c = session_keys(self.key, nonce_c, nonce_s)
        opener = Opener(c2s, await reader.readexactly(HEADERBYTES))
        _check_hello(opener.open(await read_frame(reader)))
        return Sealer(s2c), opener

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     writers: list[asyncio.StreamWriter]) -> None:
        try:
            sealer, opener = await asyncio.wait_for(self._handshake(reader, writer), self.handshake_timeout)
        except LINK_ERRORS:
            self.refused += 1
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            return  # the RPC server is gone; closing tells the client
        writers.append(up_writer)
        nodelay(up_writer)
        writer.write(sealer.header + sealer.seal(HELLO))
        await self._pump((up_reader, up_writer), (reader, writer), sealer, opener, writers)


class SealedDialer(_Tunnel):
    """Orchestrator side: a loopback listener for llama.cpp; each connection is sealed to the gate."""

    def __init__(self, remote_host: str, remote_port: int, key: bytes, *,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        super().__init__(key, handshake_timeout)
        self.remote_host = remote_host
        self.remote_port = remote_port

    @property
    def endpoint(self) -> str:
        return str(Endpoint("127.0.0.1", self.port))

    async def start(self) -> int:
        return await self._listen("127.0.0.1")

    async def _handshake(self, writers: list[asyncio.StreamWriter]) -> tuple[Stream, Sealer, Opener]:
        reader, writer = await asyncio.open_connection(self.remote_host, self.remote_port)
        writers.append(writer)  # closed by _connection whatever happens next
        nodelay(writer)
        nonce_c = os.urandom(NONCE_BYTES)
        writer.write(nonce_c)
        c2s, s2c = session_keys(self.key, nonce_c, await reader.readexactly(NONCE_BYTES))
        sealer = Sealer(c2s)
        writer.write(sealer.header + sealer.seal(HELLO))
        opener = Opener(s2c, await reader.readexactly(HEADERBYTES))
        _check_hello(opener.open(await read_frame(reader)))
        return (reader, writer), sealer, opener

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     writers: list[asyncio.StreamWriter]) -> None:
        try:
            sealed, sealer, opener = await asyncio.wait_for(self._handshake(writers), self.handshake_timeout)
        except LINK_ERRORS:
            self.refused += 1  # here: the gate could not be reached or refused us
            return
        await self._pump((reader, writer), sealed, sealer, opener, writers)
