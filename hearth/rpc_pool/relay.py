"""A one-client TCP relay in front of a loopback-only RPC server.

The ggml RPC server has no authentication, so it listens on 127.0.0.1 only; a lease opens this
relay on the node's LAN address, and the relay admits the lessee's address alone. Everyone else
is closed at accept, before a byte reaches llama.cpp. (The lessee's client may reconnect while its
previous connection is still closing, so connections from the lessee are not limited to one; the
RPC server behind serves them one at a time.)
"""

from __future__ import annotations

import asyncio

from hearth.net.pump import listening_socket, nodelay, pump


class Relay:
    def __init__(self, bind: str, client: str, target_port: int, device: str | None = None) -> None:
        self.bind = bind
        self.device = device
        self.client = client
        self.target_port = target_port
        self.port = 0
        self.refused = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, sock=listening_socket(self.bind, 0, self.device))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if not peer or peer[0] != self.client:
            self.refused += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        nodelay(writer)
        nodelay(up_writer)
        self._live.update((writer, up_writer))
        try:
            # A hang-up ends its direction with a half-close; this finally closes both sides.
            await asyncio.gather(pump(reader, up_writer, count=self._count_in),
                                 pump(up_reader, writer, count=self._count_out))
        finally:
            for w in (writer, up_writer):
                self._live.discard(w)
                w.close()

    def _count_in(self, n: int) -> None:
        self.bytes_in += n

    def _count_out(self, n: int) -> None:
        self.bytes_out += n

    async def close(self) -> None:
        """Stop accepting and cut every live connection (a revoked peer's traffic stops here)."""
        if self._server is not None:
            self._server.close()
        for w in list(self._live):
            w.transport.abort()
