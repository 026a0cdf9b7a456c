"""HOST:PORT as one type: parsed where people and peers write it, formatted where llama.cpp,
WireGuard, URLs and peers read it.

An IPv6 address is written in brackets with its port (`[::1]:8080`), as in URLs (RFC 3986): its
own colons would otherwise swallow the port. Without a port, a bare IPv6 address is accepted
where the caller supplies a default port. Hosts are IP addresses (kept in their canonical form, so
two spellings of one address compare equal) or DNS names; anything else is refused with a message
that says what is wrong, since much of this text comes from another machine.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from hearth.errors import InvalidRequest
from hearth.units import digits

MAX_HOST = 253
"""The longest DNS name; IPv6 addresses (with a zone) are shorter."""
MAX_TEXT = MAX_HOST + len("[]:65535")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_ZONE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""An IPv6 zone (fe80::1%eth0): an interface name or index. Brackets or colons would break the format."""
_DOTTED_RE = re.compile(r"[0-9.]+")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _check_host(host: object) -> str:
    """The host in canonical form, or ValueError saying why it is not one."""
    if not isinstance(host, str):
        raise ValueError(f"the host is a {type(host).__name__}, not text")
    if not host:
        raise ValueError("the host is empty")
    if len(host) > MAX_HOST:
        raise ValueError(f"the host is longer than {MAX_HOST} characters")
    addr = _address(host)
    if addr is not None:
        zone = getattr(addr, "scope_id", None)
        if zone is not None and not _ZONE_RE.fullmatch(zone):
            raise ValueError(f"the IPv6 zone {zone[:20]!r} is not an interface name or number")
        mapped = getattr(addr, "ipv4_mapped", None)
        if mapped is not None and zone is None:  # as a dual-stack socket reports an IPv4 peer
            return f"::ffff:{mapped}"  # (Python before 3.13 would write ::ffff:102:304)
        return str(addr)
    if ":" in host:
        raise ValueError(f"{host[:64]!r} is not an IPv6 address")
    if _DOTTED_RE.fullmatch(host):
        raise ValueError(f"{host[:64]!r} is not an IPv4 address")
    if not _NAME_RE.fullmatch(host):
        raise ValueError(f"{host[:64]!r} is neither an IP address nor a host name")
    return host


def _check_port(port: object) -> int:
    if type(port) is not int or not 0 <= port <= 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return port


def join_host_port(host: str, port: int | str) -> str:
    """HOST:PORT, an IPv6 host in brackets. Checks nothing, so a message about an address that
    failed (a bad --bind) can still show it; Endpoint is the checked form."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_port(text: str) -> int:
    if not digits(text) or len(text) > 5 or not 0 < int(text) < 65536:
        raise ValueError(f"port {text[:12]!r} is not a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True)
class Endpoint:
    """Where to connect or listen. `host` is an IP address (canonical, without brackets) or a DNS
    name; `port` 0 means "any free port" to a listener and is never parsed from text."""

    host: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", _check_host(self.host))
        _check_port(self.port)

    def __str__(self) -> str:
        return join_host_port(self.host, self.port)

    @property
    def address(self) -> Address | None:
        """The host as an IP address; None for a DNS name."""
        return _address(self.host)

    @property
    def is_wildcard(self) -> bool:
        """0.0.0.0 or ::, which a listener binds to mean every address: nothing to connect to."""
        addr = self.address
        return addr is not None and addr.is_unspecified

    @classmethod
    def parse(cls, text: str, default_port: int | None = None, *, ip: bool = False,
              concrete: bool = False) -> Endpoint:
        """`HOST:PORT`, `[IPV6]:PORT`, or with `default_port` also `HOST`, `[IPV6]` and a bare IPv6
        address. `ip` refuses DNS names; `concrete` refuses the wildcard (0.0.0.0, ::). Raises
        ValueError naming the text and what is wrong with it."""
        try:
            return cls._parse(text, default_port, ip, concrete)
        except ValueError as exc:
            shown = text[:64] + "…" if isinstance(text, str) and len(text) > 64 else text
            raise ValueError(f"{shown!r} is not HOST:PORT: {exc}") from None

    @classmethod
    def _parse(cls, text: str, default_port: int | None, ip: bool, concrete: bool) -> Endpoint:
        if not isinstance(text, str):
            raise ValueError(f"a {type(text).__name__} is not text")
        if not text:
            raise ValueError("it is empty")
        if len(text) > MAX_TEXT:
            raise ValueError(f"it is longer than {MAX_TEXT} characters")
        port_text: str | None = None
        if text.startswith("["):
            host, closed, rest = text[1:].partition("]")
            if not closed:
                raise ValueError("its '[' has no closing ']'")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError("after ']' comes ':PORT' or nothing")
                port_text = rest[1:]
            if not isinstance(_address(host), ipaddress.IPv6Address):
                raise ValueError("only an IPv6 address goes in brackets")
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        else:
            host = text
            if ":" in host and default_port is None:
                raise ValueError("an IPv6 address goes in brackets before its port, like [::1]:8080")
        if port_text is None:
            if default_port is None:
                raise ValueError("it has no port; write it as HOST:PORT")
            port = default_port
        else:
            port = _parse_port(port_text)
        endpoint = cls(host, port)
        if ip and endpoint.address is None:
            raise ValueError("the host must be an IP address, not a name")
        if concrete and endpoint.is_wildcard:
            raise ValueError(f"{endpoint.host} means every address; give this machine's specific address")
        return endpoint


def option_endpoint(text: str, option: str, example_port: int, default_port: int | None = None) -> Endpoint:
    """HOST:PORT given to a command-line option, or InvalidRequest naming the option and an example."""
    try:
        return Endpoint.parse(text, default_port)
    except ValueError as exc:
        raise InvalidRequest(f"{option} {exc}; e.g. 192.168.1.20:{example_port}.") from None
