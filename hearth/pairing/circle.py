"""The circle's tunnel as this machine sees it: which transport, its WireGuard interface, its peers."""

from __future__ import annotations

import logging

from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.net.endpoint import Endpoint
from hearth.pairing.exchange import PairingInfo
from hearth.pairing.trust import TrustedPeer
from hearth.settings import Settings
from hearth.tunnel.wireguard import (
    TunnelUnavailable,
    WgPeer,
    WireGuardInterface,
    load_or_create_key,
    missing,
    public_key,
    tunnel_address,
)

log = logging.getLogger("hearth.tunnel")


def choose(settings: Settings) -> str:
    """'wireguard' or 'sealed', from HEARTH_TUNNEL and what this machine allows."""
    if settings.tunnel == "sealed":
        return "sealed"
    problem = missing()
    if problem is None:
        return "wireguard"
    if settings.tunnel == "wireguard":
        raise TunnelUnavailable(problem)
    log.info("WireGuard unavailable (%s); paired peers use the sealed tunnel", problem)
    return "sealed"


def interface(settings: Settings, identity: NodeIdentity) -> WireGuardInterface:
    return WireGuardInterface(settings.wg_interface, load_or_create_key(settings.home),
                              tunnel_address(identity.public_key), settings.wg_port,
                              log_path=settings.home / "logs" / f"wireguard-{settings.wg_interface}.log")


def wg_peers(trusted: list[TrustedPeer]) -> list[WgPeer]:
    return [WgPeer(p.info.wireguard_key, p.info.tunnel_address, p.info.endpoints[0] if p.info.endpoints else None)
            for p in trusted]


def bring_up(settings: Settings, identity: NodeIdentity, trusted: list[TrustedPeer]) -> WireGuardInterface:
    """Create or refresh the interface and make its peers the paired ones."""
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    wg = interface(settings, identity)
    wg.up()
    wg.set_peers(wg_peers(trusted))
    return wg


def my_info(settings: Settings, identity: NodeIdentity, name: str, lan_address: str, agent_port: int) -> PairingInfo:
    """What this machine tells a peer it pairs with."""
    wg_key = public_key(load_or_create_key(settings.home))
    endpoint = str(Endpoint(lan_address, settings.wg_port))
    return PairingInfo(name, b64.encode(identity.public_key), wg_key, tunnel_address(identity.public_key), (endpoint,),
                       agent_port)
