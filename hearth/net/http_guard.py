"""What hearth's HTTP listeners accept before a request reaches a route: which Host headers, and
how many connections per client address. Decisions only; the sockets live in hearth.net.webserve.

The Host check defeats DNS rebinding: a web page the user visits can point its own name at
127.0.0.1 and then talk to a loopback server through the browser, but the browser still sends
that name in Host. Only names that really mean this server (its bind address, `localhost` on
loopback, this machine's names when bound to the LAN, and HEARTH_ALLOWED_HOSTS) get through.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.errors import HearthError
from hearth.net.endpoint import Endpoint
from hearth.net.http_errors import body_for


class HostNotAllowed(HearthError):
    """The Host header names something this server is not (DNS rebinding, or a missing setting)."""

    http_status = 421
    error_type = "invalid_request_error"
    code = "host_not_allowed"


def host_name(header: str) -> str:
    """The host part of a Host header, lower-case, without port, brackets or a trailing dot.
    A header that is not HOST[:PORT] comes back as it is, and so matches no allowed name."""
    value = header.strip().lower()
    try:
        return Endpoint.parse(value, default_port=80).host.rstrip(".")
    except ValueError:  # not HOST[:PORT]: compared as sent, it matches no allowed name
        return value.rstrip(".")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class HostRule:
    """The Host headers a listener bound to one address accepts. Any port is accepted: a port says
    nothing about who asks (an SSH tunnel changes it), the name is what DNS rebinding forges."""

    bind: str
    names: frozenset[str] = frozenset()
    any_host: bool = False

    @classmethod
    def for_bind(cls, bind: str, configured: Iterable[str] = (), machine_names: Iterable[str] = ()) -> HostRule:
        """`configured` is HEARTH_ALLOWED_HOSTS (`*` turns the check off); `machine_names` (this
        host's names) count only when the listener is reachable from other machines."""
        names = {host_name(n) for n in configured if n.strip()}
        any_host = "*" in names
        ip = _ip(bind)
        if ip is None or ip.is_loopback or ip.is_unspecified:
            names.add("localhost")
        if ip is None or not ip.is_loopback:
            names.update(host_name(n) for n in machine_names if n.strip())
        return cls(bind, frozenset(names - {"*", ""}), any_host)

    def allows(self, header: str | None) -> bool:
        """None is a request without Host (HTTP/1.0): no browser sends one, so no rebinding."""
        if header is None or self.any_host:
            return True
        host = host_name(header)
        if host in self.names:
            return True
        ip, bound = _ip(host), _ip(self.bind)
        if ip is None or bound is None:
            return False
        return ip == bound or bound.is_unspecified


def parse_allowed_hosts(setting: str) -> list[str]:
    """HEARTH_ALLOWED_HOSTS: names separated by commas or spaces."""
    return [n for n in setting.replace(",", " ").split() if n]


def _error_body(path: str, exc: HearthError) -> bytes:
    return json.dumps(body_for(exc, path)).encode()


class HostGuard:
    """ASGI middleware in front of the whole app: a request whose Host this listener does not
    answer to gets 421 before routing, authentication or body parsing."""

    def __init__(self, app: ASGIApp, rule: HostRule) -> None:
        self.app, self.rule = app, rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hosts = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
        if len(hosts) <= 1 and self.rule.allows(hosts[0] if hosts else None):
            await self.app(scope, receive, send)
            return
        shown = hosts[0][:100] if len(hosts) == 1 else f"{len(hosts)} Host headers"
        exc = HostNotAllowed(f"This server does not answer to Host {shown!r}. Use its address "
                             f"({self.rule.bind}) or add the name to HEARTH_ALLOWED_HOSTS.")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = _error_body(str(scope.get("path", "")), exc)
        await send({"type": "http.response.start", "status": exc.http_status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class Connection(Protocol):
    """What PeerTable needs to know of a connection."""

    @property
    def waiting_for_headers(self) -> bool:
        """True between requests: before the first header byte, or in the middle of the headers."""
        ...


class PeerTable:
    """Open connections by client address, and who gives way when a cap is reached.

    A new connection over a cap (per address, or in all) makes the oldest connection of that
    address (or of anyone) that is still waiting for its request headers give way: slow or idle
    connections cannot lock out a client that sends a whole request. If every connection is busy
    with a request, the new one is refused instead.
    """

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client, self.total = per_client, total
        self._all: dict[Connection, str] = {}
        self._by_peer: dict[str, dict[Connection, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def count(self, peer: str) -> int:
        return len(self._by_peer.get(peer, ()))

    def admit(self, conn: Connection, peer: str) -> tuple[bool, list[Connection]]:
        """Whether `conn` may stay, and the connections that must close to make room for it
        (already forgotten here)."""
        evict: list[Connection] = []
        mine = self._by_peer.get(peer, {})
        if len(mine) >= self.per_client:
            oldest = next((c for c in mine if c.waiting_for_headers), None)
            if oldest is None:
                return False, []
            evict.append(oldest)
            self.release(oldest)
        if len(self._all) >= self.total:
            oldest = next((c for c in self._all if c.waiting_for_headers), None)
            if oldest is None:
                return False, evict
            evict.append(oldest)
            self.release(oldest)
        self._all[conn] = peer
        self._by_peer.setdefault(peer, {})[conn] = None
        return True, evict

    def release(self, conn: Connection) -> None:
        """Forget a closed (or closing) connection; releasing twice is harmless."""
        peer = self._all.pop(conn, None)
        if peer is None:
            return
        mine = self._by_peer[peer]
        mine.pop(conn, None)
        if not mine:
            del self._by_peer[peer]
