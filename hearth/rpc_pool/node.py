"""`hearth node`: run this machine's agent (control API + mDNS advertisement)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from hearth.discovery.records import DeviceInfo, PeerRecord
from hearth.discovery.static import check_peer, save_static_peers
from hearth.errors import HearthError
from hearth.ggml.process import local_rpc_version
from hearth.identity import NodeIdentity
from hearth.net.bind import check_bind, is_loopback
from hearth.net.endpoint import join_host_port
from hearth.net.pump import listening_socket
from hearth.net.webserve import web_server
from hearth.node_api.feed import Feed
from hearth.pairing.trust import TrustedPeer, TrustStore
from hearth.radius import Radius, deprecation, parse_admit
from hearth.rpc_pool.leases import DEFAULT_CACHE_BYTES, LeaseManager
from hearth.settings import Settings
from hearth.tunnel.wireguard import WireGuardInterface
from hearth.units import parse_size

log = logging.getLogger("hearth.node")
GRACE_S = 0.3


def local_devices() -> list[DeviceInfo]:
    from hearth.ggml import native

    return [DeviceInfo(d.name, d.free, d.total) for d in map(native.describe, native.local_devices())]


def seen_lookup(trust: TrustStore, every: float = 60.0) -> Callable[[str], TrustedPeer | None]:
    """The paired peer with this identity key, noting when it was last seen (at most once a minute:
    each note rewrites the trust store)."""
    noted: dict[str, float] = {}

    def lookup(key: str) -> TrustedPeer | None:
        peer = trust.by_identity_key(key)
        now = time.time()
        if peer is not None and now - noted.get(peer.node_id, 0.0) > every:
            noted[peer.node_id] = now
            trust.seen(peer.node_id, now=now)
        return peer

    return lookup


async def watch_trust(trust: TrustStore, manager: LeaseManager, wg: WireGuardInterface | None,
                      interval: float = 0.1, feed: Feed | None = None) -> None:
    """Apply `hearth pair` / `hearth unpair` while running: an unpaired peer's leases and live
    connections end and its WireGuard peer goes, well within a second (and `paired` /
    `unpaired` go on the node's feed)."""
    from hearth.pairing.circle import wg_peers

    seen: tuple[int, int] | None = None
    names: dict[str, str] | None = None
    while True:
        await asyncio.sleep(interval)
        stamp = trust.stamp()
        if stamp == seen:
            continue
        seen = stamp
        paired = trust.all()
        ids = {p.node_id for p in paired}
        now = {p.node_id: p.info.name for p in paired}
        if feed is not None and names is not None:
            for node_id in now.keys() - names.keys():
                feed.publish("paired", f"paired with {now[node_id]}", node=node_id[:16], name=now[node_id])
            for node_id in names.keys() - now.keys():
                feed.publish("unpaired", f"unpaired {names[node_id]}", node=node_id[:16], name=names[node_id])
        names = now
        revoked = {lease.holder for lease in manager.leases.values()} - ids
        for holder in revoked:
            ended = await manager.revoke(holder)
            log.warning("unpaired %s: ended %d lease(s)", holder, ended)
        if wg is not None:
            if revoked:
                # Let the resets of the cut connections, and our refusal of its next request, reach the
                # peer through the tunnel before it goes: the peer then fails over at once instead of
                # waiting out timeouts on a silent tunnel.
                await asyncio.sleep(GRACE_S)
            await asyncio.to_thread(wg.set_peers, wg_peers(paired))


async def run_node(settings: Settings, bind: str, port: int, name: str, max_memory: int | None,
                   static_peers: list[str], admit: Radius = Radius.HOUSEHOLD, ready: asyncio.Event | None = None,
                   cache_size: int = DEFAULT_CACHE_BYTES) -> None:
    """Serve leases to the household on `bind` (admit HOUSEHOLD), or to paired peers only
    (admit TRUSTED): through WireGuard on the tunnel address, or sealed tunnels without it."""
    from hearth.discovery.mdns import Advertiser
    from hearth.pairing import circle
    from hearth.pairing.signed import Verifier
    from hearth.rpc_pool.agent import create_agent_app
    from hearth.tunnel.wireguard import TUNNEL_NET

    identity = NodeIdentity.load_or_create(settings.home)
    rpc = await asyncio.to_thread(local_rpc_version)
    devices = await asyncio.to_thread(local_devices)
    free = sum(d.free for d in devices)
    budget = min(free, max_memory) if max_memory else free
    save_static_peers(settings.home, static_peers)
    trust = TrustStore(settings.home)
    wg: WireGuardInterface | None = None
    serve_on = bind
    paired_only = Verifier(seen_lookup(trust)) if admit is Radius.TRUSTED else None
    if admit is Radius.TRUSTED:
        if circle.choose(settings) == "wireguard":
            wg = await asyncio.to_thread(circle.bring_up, settings, identity, trust.all())
            serve_on = wg.address  # nothing of the agent listens on the LAN
    device = wg.name if wg is not None else None
    manager = LeaseManager(serve_on, budget, settings.home / "rpc-cache", settings.home / "logs",
                           threads=settings.n_threads, sealed=admit is Radius.TRUSTED and wg is None, device=device,
                           cache_limit=cache_size)
    advertiser: Advertiser | None = None
    loopback = is_loopback(bind)

    def on_change(record: PeerRecord) -> None:
        if advertiser is not None:
            advertiser.update(record)

    feed = Feed()  # this process's one feed
    app = create_agent_app(identity, name, port, bind, rpc, local_devices, manager, on_change, paired_only, TUNNEL_NET,
                           feed=feed)
    server = web_server(app, settings, serve_on)
    try:
        sock = listening_socket(serve_on, port, device)
    except OSError as exc:
        raise HearthError(f"Cannot listen on {join_host_port(serve_on, port)}: {exc.strerror or exc}. Is another "
                          "`hearth node` running? Stop it or choose another --port.") from exc
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if serving.done():
        await serving  # raises the bind error
        return
    if not loopback:
        from hearth.rpc_pool.agent import node_record

        advertiser = await asyncio.to_thread(
            Advertiser, node_record(identity, name, port, bind, rpc, devices, manager), bind)
    log.info("node %s (%s) on %s, admitting %s", name, identity.node_id, join_host_port(serve_on, port), admit)
    watcher = asyncio.create_task(watch_trust(trust, manager, wg, feed=feed)) if admit is Radius.TRUSTED else None
    if ready is not None:
        ready.set()
    try:
        await serving
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if advertiser is not None:
            await asyncio.to_thread(advertiser.close)


def serve_node(settings: Settings, bind: str, port: int, name: str | None, max_memory: str | None,
               peers: list[str], admit: str, cache_size: str, say: Callable[[str], None]) -> None:
    """`hearth node`: check what it was given, then serve until SIGINT or SIGTERM."""
    import socket

    from hearth.ggml.native import check_rpc_backend
    from hearth.net.webserve import loop_factory, stop_cleanly_on_sigterm
    from hearth.pairing.names import check_name, remember_node_name

    address = check_bind(bind)
    label = check_name(name or socket.gethostname())
    remember_node_name(settings.home, label)  # `hearth pair` introduces this machine by it
    cap = parse_size(max_memory) if max_memory else None
    cache_cap = parse_size(cache_size)
    statics = [check_peer(p) for p in peers]
    admitting = parse_admit(admit)
    note = deprecation(admit, "--admit")
    if note:
        say(f"note: {note}")
    check_rpc_backend()
    limit = f", at most {max_memory}" if max_memory else ""
    say(f"hearth node {label} on {join_host_port(address, port)}, admitting {admitting}{limit}")
    stop_cleanly_on_sigterm("hearth node")
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(run_node(settings, address, port, label, cap, statics, admitting, cache_size=cache_cap))
