"""`hearth pair` and `hearth unpair` from start to end, without the terminal.

The host prints a code and waits (on the LAN, advertised by mDNS, or at a rendezvous); the guest
finds it by the code's number (mDNS, --to, or the rendezvous) and both run the PAKE exchange
(transport.py). After both people compare the verifier, `keep` stores the peer and brings the
WireGuard circle up. What a person must see on the way comes out as notices for the caller to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from hearth.errors import HearthError
from hearth.identity import NodeIdentity
from hearth.net.bind import check_bind, is_loopback
from hearth.net.endpoint import Endpoint
from hearth.pairing import circle
from hearth.pairing.addresses import lan_address
from hearth.pairing.codes import make_code, parse_code
from hearth.pairing.exchange import PairingFailed, PairingGuest, PairingHost, PairingInfo
from hearth.pairing.names import hostname_label
from hearth.pairing.rendezvous import meet
from hearth.pairing.transport import Paired, guest_session, host_session, join, serve_host
from hearth.pairing.trust import TrustedPeer, TrustStore
from hearth.settings import Settings
from hearth.tunnel.wireguard import tunnel_address

MDNS_GROUP = "224.0.0.251"
"""Where mDNS goes: the host's LAN address is the one on the way there, when no rendezvous is given."""


@dataclass(frozen=True)
class CodeReady:
    """The code to read out, and how the other machine should reach this one."""

    code: str
    via: Endpoint | None


@dataclass(frozen=True)
class Waiting:
    address: str
    port: int


Notice = CodeReady | Waiting


@dataclass(frozen=True)
class Host:
    """What `hearth pair` (no code) was given."""

    label: str
    address: str
    port: int
    node_port: int
    via: Endpoint | None = None


@dataclass(frozen=True)
class Guest:
    """What `hearth pair CODE` was given (the code as `codes.parse_code` returns it)."""

    label: str
    nameplate: int
    code: str
    node_port: int
    to: Endpoint | None = None
    via: Endpoint | None = None
    wait: float = 5.0
    bind: str | None = None


def host_address(bind: str | None, via: Endpoint | None) -> str:
    """The address a host waits on: --bind, else this machine's address toward the rendezvous or the LAN."""
    return check_bind(bind or lan_address(via.host if via else MDNS_GROUP))


def _me(settings: Settings, identity: NodeIdentity, label: str, address: str, node_port: int) -> PairingInfo:
    return replace(circle.my_info(settings, identity, label, address, node_port), hostname=hostname_label())


async def host(settings: Settings, identity: NodeIdentity, h: Host, notify: Callable[[Notice], None]) -> Paired:
    nameplate = 1 + secrets.randbelow(999)  # short to read out; codes allow up to 9999
    code = make_code(nameplate)
    me = _me(settings, identity, h.label, h.address, h.node_port)
    session = PairingHost(parse_code(code)[1], nameplate, me, now=time.time())
    notify(CodeReady(code, h.via))
    if h.via is not None:
        reader, writer, _ = await meet(h.via.host, h.via.port, nameplate, "host")
        try:
            return await host_session(session, reader, writer)
        finally:
            writer.close()
    ready = asyncio.Event()
    task = asyncio.create_task(serve_host(session, h.address, h.port, ready))
    try:
        listening = asyncio.create_task(ready.wait())
        await asyncio.wait([task, listening], return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        async with _advertised(nameplate, h, lan=not task.done()):
            notify(Waiting(h.address, h.port))
            return await task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def _advertised(nameplate: int, h: Host, lan: bool) -> AsyncIterator[None]:
    """The waiting host's mDNS record, closed however the wait ends (a signal included)."""
    if not lan or is_loopback(h.address):
        yield
        return
    from hearth.discovery.mdns import PairingAdvertiser
    from hearth.discovery.records import PairingRecord

    advertising = asyncio.create_task(asyncio.to_thread(PairingAdvertiser, PairingRecord(
        nameplate, h.label, h.address, h.port)))
    try:
        await asyncio.shield(advertising)  # a signal meanwhile must not lose the record unclosed
        yield
    finally:
        made = (await asyncio.gather(advertising, return_exceptions=True))[0]
        if not isinstance(made, BaseException):
            await asyncio.to_thread(made.close)


async def guest(settings: Settings, identity: NodeIdentity, g: Guest) -> Paired:
    nameplate, code = g.nameplate, g.code

    def me(toward: str) -> PairingInfo:
        return _me(settings, identity, g.label, g.bind or lan_address(toward), g.node_port)

    if g.via is not None:
        session = PairingGuest(code, nameplate, me(g.via.host))
        reader, writer, _ = await meet(g.via.host, g.via.port, nameplate, "guest", first=session.start())
        try:
            return await guest_session(session, reader, writer)
        finally:
            writer.close()
    target = g.to
    if target is None:
        from hearth.discovery.mdns import find_pairing_host

        found = await asyncio.to_thread(find_pairing_host, nameplate, g.wait, g.bind)
        if found is None:
            raise PairingFailed(f"No machine on this network waits with code number {nameplate}; "
                                "check the code, or give --to HOST:PORT.")
        target = Endpoint(found.address, found.port)
    return await join(PairingGuest(code, nameplate, me(target.host)), target.host, target.port)


@dataclass(frozen=True)
class Circle:
    """The tunnel the circle's traffic uses after a change of peers."""

    wireguard: str | None
    """'NAME ADDRESS' of the WireGuard interface holding the peers; None: the sealed tunnel."""
    peers: int
    problem: str | None = None
    """Why WireGuard could not be used, when it was wanted."""


def check_address_free(trust: TrustStore, identity: NodeIdentity, peer: PairingInfo, settings: Settings) -> None:
    """Tunnel addresses come from identity keys (1 in 65534 per pair collide): refuse a peer whose
    address is already this machine's or another peer's."""
    taken = {p.info.tunnel_address: p.info.name for p in trust.all() if p.node_id != peer.node_id}
    taken[tunnel_address(identity.public_key)] = "this machine"
    if peer.tunnel_address in taken:
        owner = taken[peer.tunnel_address]
        raise PairingFailed(f"{peer.name}'s tunnel address {peer.tunnel_address} is already {owner}'s; one of "
                            f"them needs a new identity (move {settings.home / 'identity'} away).")


def keep(settings: Settings, identity: NodeIdentity, result: Paired) -> TrustedPeer:
    """Store the confirmed peer (after both people compared the verifier)."""
    trust = TrustStore(settings.home)
    check_address_free(trust, identity, result.peer, settings)
    return trust.add(result.peer, result.secret)


def join_circle(settings: Settings, identity: NodeIdentity) -> Circle:
    """Give the WireGuard interface every paired peer, where this machine can run WireGuard."""
    everyone = TrustStore(settings.home).all()
    try:
        if circle.choose(settings) == "wireguard":
            wg = circle.bring_up(settings, identity, everyone)
            return Circle(f"{wg.name} {wg.address}", len(everyone))
    except HearthError as exc:
        return Circle(None, len(everyone), problem=exc.message)
    return Circle(None, len(everyone))


@dataclass(frozen=True)
class Unpaired:
    peer: TrustedPeer
    problem: str | None = None
    """Why the WireGuard peer could not be removed here, if it could not."""


def unpair(settings: Settings, name_or_id: str, node_grace: float = 0.5) -> Unpaired:
    """Forget a paired peer. A running node sees the trust store change, ends the peer's leases
    (their sockets close through the tunnel), then drops its WireGuard peer; give it `node_grace`
    seconds to, then drop the WireGuard peer here (there may be no node)."""
    removed = TrustStore(settings.home).remove(name_or_id)
    wg = circle.interface(settings, NodeIdentity.load_or_create(settings.home))
    try:
        if wg.exists():
            deadline = time.monotonic() + node_grace
            while any(p.public_key == removed.info.wireguard_key for p in wg.peers()) and time.monotonic() < deadline:
                time.sleep(0.05)
            wg.remove_peer(removed.info.wireguard_key)
    except (OSError, RuntimeError) as exc:
        return Unpaired(removed, f"could not update WireGuard {wg.name}: {exc}")
    return Unpaired(removed)


async def rendezvous(bind: str, port: int, on_ready: Callable[[str, int], None]) -> None:
    """`hearth rendezvous`: splice pairing machines until cancelled (SIGINT, SIGTERM)."""
    from hearth.pairing.rendezvous import Rendezvous

    address = check_bind(bind)
    server = Rendezvous(address, port)
    await server.start()
    on_ready(address, server.port)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
