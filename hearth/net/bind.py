"""Which addresses hearth may listen on: one concrete address of this machine, never the wildcard."""

from __future__ import annotations

import ipaddress

from hearth.errors import InvalidRequest


def check_bind(address: str, option: str = "--bind") -> str:
    """`address` as a normalised IP address; the wildcard (0.0.0.0, ::) and names are refused."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError as exc:
        raise InvalidRequest(f"{option} {address!r} is not an IP address of this machine.") from exc
    if addr.is_unspecified:
        raise InvalidRequest(f"{option} needs one address of this machine, not 0.0.0.0 or ::; "
                             "hearth never listens on every interface.")
    return str(addr)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` ('localhost' or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
