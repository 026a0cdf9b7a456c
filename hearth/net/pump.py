"""Moving bytes between sockets: listeners, TCP_NODELAY, and the copy loop relay and tunnels share."""

from __future__ import annotations

import asyncio
import socket

CHUNK = 1 << 16


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
