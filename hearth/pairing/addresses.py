"""Which of this machine's addresses `hearth pair` waits on and tells its peer.

The first answer is the route's: the source address of a UDP socket connected toward the
other side (no packet is sent). An isolated LAN (a switch, no router) has no route toward the
mDNS group, so that fails with ENETUNREACH; then the machine's own interfaces decide: the one
non-loopback IPv4 address of an up interface, or a clear error naming --bind when there are none
or several (guessing among several could advertise an address the other machine cannot reach).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from hearth.errors import InvalidRequest
from hearth.tunnel.wireguard import TUNNEL_NET

IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40


class NoLanAddress(InvalidRequest):
    """No single LAN address to use: the person must name one with --bind."""


@dataclass(frozen=True)
class InterfaceAddress:
    interface: str
    address: str
    flags: int


def route_source(toward: str) -> str | None:
    """This machine's address on the way to `toward`, or None when there is no route."""
    family = socket.AF_INET6 if ":" in toward else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((toward, 9))
        except OSError:
            return None
        return str(s.getsockname()[0])


def interface_addresses() -> list[InterfaceAddress]:
    """Every IPv4 address on this machine's interfaces (netlink; no privileges needed)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = {link["index"]: link for link in ipr.get_links()}
        found = []
        for addr in ipr.get_addr(family=socket.AF_INET):
            link = links.get(addr["index"])
            if link is None:
                continue
            ip = addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS")
            if ip:
                found.append(InterfaceAddress(str(link.get_attr("IFLA_IFNAME")), str(ip), int(link["flags"])))
        return found


def pick_lan_address(found: list[InterfaceAddress]) -> str:
    """The one LAN address among `found`: up and running, not loopback, not hearth's own tunnel;
    link-local (169.254/16) only when nothing else is there. NoLanAddress otherwise."""
    usable = []
    for f in found:
        ip = ipaddress.ip_address(f.address)
        wanted = IFF_UP | IFF_RUNNING
        if f.flags & wanted == wanted and not f.flags & IFF_LOOPBACK and not ip.is_loopback and ip not in TUNNEL_NET:
            usable.append((f, ip.is_link_local))
    choice = [f for f, link_local in usable if not link_local] or [f for f, _ in usable]
    if len(choice) == 1:
        return choice[0].address
    if not choice:
        raise NoLanAddress("This machine has no route toward the LAN and no LAN address on an up interface; "
                           "connect it, then give --bind with its LAN address (or meet through --via HOST:PORT).")
    listed = ", ".join(f"{f.address} on {f.interface}" for f in choice)
    raise NoLanAddress(f"No route toward the LAN tells which address to use ({listed}); "
                       "choose one with --bind ADDRESS.")


def lan_address(toward: str) -> str:
    """The address to wait on or announce for a peer reached toward `toward`."""
    routed = route_source(toward)
    if routed is not None:
        return routed
    if ":" in toward:
        raise NoLanAddress(f"No IPv6 route toward {toward}; give --bind with this machine's address.")
    return pick_lan_address(interface_addresses())
