"""How hearth runs uvicorn: one place for `hearth serve` and `hearth node`.

uvicorn as configured by default trusts X-Forwarded-For from loopback (so a local process could
claim any address, and a node's leases are bound to the caller's address), bounds neither the
time nor the size of a request's headers (a connection that never finishes them is held forever),
and accepts any number of connections per client. Here proxy headers are off, the Host header is
checked (hearth.net.http_guard), and every connection goes through GuardedProtocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import socket
from collections.abc import Callable
from typing import Any, ClassVar

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hearth.errors import Stopped
from hearth.net.http_errors import error_body
from hearth.net.http_guard import HostGuard, HostRule, PeerTable, parse_allowed_hosts
from hearth.settings import Settings

log = logging.getLogger("hearth.http")

MAX_HEADER_BYTES = 64 * 1024
"""A request line and headers longer than this get 431 (httptools sets no limit of its own)."""


def _reply(status: int, reason: str, message: str, code: str) -> bytes:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = json.dumps(error_body(message, kind, code)).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    return head + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus: a request's line and headers must arrive within
    `header_timeout` seconds and MAX_HEADER_BYTES, and connections are counted per client address
    (PeerTable). The clock starts when a connection is accepted and, on a kept-alive connection,
    at the first byte of the next request (uvicorn's keep-alive timeout closes idle ones); it stops
    when the headers are complete. httptools calls on_message_begin and on_headers_complete."""

    table: ClassVar[PeerTable]
    header_timeout: ClassVar[float]

    _timer: asyncio.TimerHandle | None = None
    _in_headers = False
    _header_bytes = 0

    @property
    def waiting_for_headers(self) -> bool:
        """No request is being served: closing this connection loses nothing but a slow request."""
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = self.client[0] if self.client else ""
        admitted, evicted = self.table.admit(self, peer)
        for other in evicted:
            if isinstance(other, GuardedProtocol):
                other._disarm()
                other.transport.close()
        if not admitted:
            log.info("refused a connection from %s: %d connections already busy", peer, self.table.count(peer))
            self._close_with(_reply(503, "Service Unavailable", f"Too many connections from {peer}; "
                                    "finish or close some and retry.", "too_many_connections"))
            return
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._header_bytes = True, 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._close_with(_reply(431, "Request Header Fields Too Large", "The request line and headers exceed "
                                    f"{MAX_HEADER_BYTES} bytes.", "headers_too_large"))

    def handle_websocket_upgrade(self) -> None:
        """The connection becomes a WebSocket's (only where the server was given `ws`): it leaves
        this table, as uvicorn hands the transport to another protocol and never calls
        connection_lost here; the WebSocket route bounds its own connections per address."""
        self._disarm()
        self.table.release(self)
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.table.release(self)
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._timer is None and not self.transport.is_closing():
            self._timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not (self._in_headers or self.cycle is None):
            return
        if self._in_headers:
            self._close_with(_reply(408, "Request Timeout", f"The request headers did not arrive within "
                                    f"{self.header_timeout:g} s.", "request_timeout"))
        else:
            self._close_with(b"")  # connected and silent: nothing to answer

    def _close_with(self, reply: bytes) -> None:
        """Answer (unless a response is under way: bytes now would corrupt it) and close."""
        self._disarm()
        self.table.release(self)
        if not self.transport.is_closing():
            if reply and self.waiting_for_headers:
                self.transport.write(reply)
            self.transport.close()


def connection_cap(configured: int) -> int:
    """HEARTH_MAX_CONNECTIONS, but at most half this process's file limit: the other half is for
    the engine's pipes, model files, RPC servers and relays."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return configured if soft == resource.RLIM_INFINITY else max(1, min(configured, soft // 2))


def guarded_protocol(settings: Settings) -> type[GuardedProtocol]:
    """A protocol class with its own PeerTable: one per listening server."""
    total = connection_cap(settings.max_connections)
    table = PeerTable(min(settings.max_connections_per_client, total), total)
    return type("GuardedProtocol", (GuardedProtocol,), {"table": table, "header_timeout": settings.header_timeout})


def machine_names() -> list[str]:
    """Names other machines may use for this one: its host name and its mDNS name (no DNS lookup:
    that can stall start-up where no resolver answers)."""
    name = socket.gethostname()
    return [name, f"{name}.local"]


def stop_cleanly_on_sigterm(what: str) -> None:
    """uvicorn handles a SIGTERM while it serves, shuts down, then delivers the signal again; with
    the default handler that kills the process before `finally` blocks run (a node's mDNS goodbye,
    its trust watcher). Make that delivery, and a SIGTERM before serving starts, a Stopped error
    that unwinds them."""

    def handler(signum: int, _frame: object) -> None:
        raise Stopped(what, signum)

    signal.signal(signal.SIGTERM, handler)


SHUTDOWN_GRACE_S = 3
"""On SIGTERM/SIGINT, replies still streaming get this long before they are cut (uvicorn would
otherwise wait for them forever, and a second signal would skip the engine's shutdown)."""


def web_server(app: ASGIApp, settings: Settings, bind: str, **config: Any) -> uvicorn.Server:
    """The uvicorn server hearth runs `app` with on `bind` (start it with `serve(sockets=[...])`)."""
    rule = HostRule.for_bind(bind, parse_allowed_hosts(settings.allowed_hosts), machine_names())
    config.setdefault("timeout_graceful_shutdown", SHUTDOWN_GRACE_S)
    return uvicorn.Server(uvicorn.Config(
        HostGuard(app, rule), host=bind, log_level="warning", access_log=False, proxy_headers=False,
        http=guarded_protocol(settings), **{"ws": "none", **config}))


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when present: it halves the server's CPU per streamed token."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
