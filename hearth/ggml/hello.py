"""The ggml RPC HELLO handshake, to learn a server's protocol version before planning with it.

Wire format (ggml-rpc.cpp, protocol 7): request = cmd byte 14 | u64 size | hello_req (24 bytes of
connection capabilities, zero = none); response = u64 size | major, minor, patch, pad, 24 bytes.
An RPC server serves one connection at a time, so probe before the engine connects.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from hearth.errors import LinkFailed
from hearth.net.endpoint import join_host_port
from hearth.units import digits

RPC_CMD_HELLO = 14
CAPS_SIZE = 24
HELLO_REQ = struct.pack("<BQ", RPC_CMD_HELLO, CAPS_SIZE) + bytes(CAPS_SIZE)
HELLO_RSP_SIZE = 4 + CAPS_SIZE


class RpcUnreachable(LinkFailed):
    """An RPC server did not answer the handshake."""

    code = "rpc_unreachable"


@dataclass(frozen=True, order=True)
class RpcVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @classmethod
    def parse(cls, text: str) -> RpcVersion:
        parts = text.strip().split(".")
        if len(parts) != 3 or not all(digits(p) and len(p) <= 3 for p in parts):
            raise ValueError(f"not an RPC protocol version: {text!r}")
        return cls(*(int(p) for p in parts))

    def serves(self, server: RpcVersion) -> bool:
        """The client's own rule (negotiate_hello): same major, server minor not newer."""
        return server.major == self.major and server.minor <= self.minor


def parse_hello_response(data: bytes) -> RpcVersion:
    if len(data) < 8:
        raise ValueError("short HELLO response")
    (size,) = struct.unpack_from("<Q", data)
    if size != HELLO_RSP_SIZE or len(data) < 8 + size:
        raise ValueError(f"HELLO response of {size} bytes, expected {HELLO_RSP_SIZE}")
    major, minor, patch = data[8], data[9], data[10]
    return RpcVersion(major, minor, patch)


def probe(host: str, port: int, timeout: float = 3.0) -> RpcVersion:
    """Connect, say HELLO, read the version, hang up."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(HELLO_REQ)
            buf = b""
            while len(buf) < 8 + HELLO_RSP_SIZE:
                chunk = s.recv(8 + HELLO_RSP_SIZE - len(buf))
                if not chunk:
                    break
                buf += chunk
        return parse_hello_response(buf)
    except (OSError, ValueError) as exc:
        where = join_host_port(host, port)
        raise RpcUnreachable(f"The RPC server at {where} did not answer the handshake ({exc}).") from exc
