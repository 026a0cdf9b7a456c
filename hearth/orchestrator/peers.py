"""Finding the circle's nodes: mDNS hints, static peers and paired peers, each proven by its key.

Agents are asked through hearth.node_api's client, signed with this machine's identity: nodes
that admit paired peers only answer nothing else; household nodes ignore the signature.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, replace
from typing import Any

from hearth.discovery.records import PeerRecord
from hearth.errors import HearthError
from hearth.ggml.hello import RpcVersion
from hearth.identity import ForgedNode, NodeIdentity, verify_proof
from hearth.net.endpoint import Endpoint, join_host_port
from hearth.node_api.client import NodeClient
from hearth.pairing.trust import TrustedPeer, TrustStore
from hearth.radius import Radius


@dataclass(frozen=True)
class Peer:
    record: PeerRecord
    source: str
    """'mdns', 'static' or 'paired'."""
    verified: bool
    compatible: bool
    problem: str | None = None
    radius: Radius = Radius.HOUSEHOLD
    """HOUSEHOLD (found on this LAN or given with --peer) or TRUSTED (paired)."""
    secret: bytes | None = None
    """The pairing secret, for sealed tunnels to a paired node without WireGuard."""

    @property
    def usable(self) -> bool:
        return self.verified and self.compatible

    @property
    def address(self) -> str:
        return self.record.addresses[0]

    @property
    def agent(self) -> Endpoint:
        return Endpoint(self.address, self.record.port)

    @property
    def base_url(self) -> str:
        return f"http://{self.agent}"

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {"node_id": r.node_id, "name": r.name, "address": self.address, "port": r.port,
                "version": r.version, "rpc_version": str(r.rpc), "free_bytes": r.free_bytes,
                "devices": [vars(d) for d in r.devices], "source": self.source, "verified": self.verified,
                "compatible": self.compatible, "problem": self.problem, "radius": self.radius.value, "full": r.full}


async def check(nodes: NodeClient, address: str, port: int, source: str, local_rpc: RpcVersion,
                claimed: str | None = None) -> Peer:
    """Fresh status from the node's control API, then proof that it holds the key its id names."""
    node = Endpoint(address, port)
    record = (await nodes.status(node)).record
    if claimed is not None and claimed != record.node_id:
        raise ForgedNode(f"{node} advertised node {claimed} but its agent is {record.node_id}.")
    nonce = os.urandom(32)
    proof = await nodes.prove(node, nonce)
    verify_proof(record.node_id, proof.public_key, nonce, proof.signature)
    compatible = local_rpc.serves(record.rpc)
    problem = None if compatible else (
        f"speaks ggml RPC {record.rpc}, this build {local_rpc}: update hearth on one of them")
    return Peer(record, source, True, compatible, problem)


async def checked_or_problem(nodes: NodeClient, address: str, port: int, source: str, local_rpc: RpcVersion,
                             claimed: str | None) -> Peer | str:
    try:
        return await check(nodes, address, port, source, local_rpc, claimed)
    except HearthError as exc:
        return f"{join_host_port(address, port)} ({source}): {exc.message}"


async def check_paired(nodes: NodeClient, local_rpc: RpcVersion, paired: TrustedPeer,
                       via_tunnel: bool) -> Peer | str:
    """A paired node through the tunnel (when this machine has one), else at its LAN endpoint."""
    info = paired.info
    places = ([info.tunnel_address] if via_tunnel else []) + [Endpoint.parse(e).host for e in info.endpoints[:1]]
    problems = []
    for address in places:
        res = await checked_or_problem(nodes, address, info.agent_port, "paired", local_rpc, paired.node_id)
        if isinstance(res, Peer):
            return replace(res, radius=Radius.TRUSTED, secret=paired.secret_bytes)
        problems.append(res)
    return "; ".join(problems) or f"{info.name}: no address to reach it"


async def discover(local_rpc: RpcVersion, *, wait: float = 2.0, static: list[str] | None = None,
                   browse: bool = True, exclude: str | None = None, identity: NodeIdentity | None = None,
                   trust: TrustStore | None = None, via_tunnel: bool = False,
                   ) -> tuple[list[Peer], list[str]]:
    """Peers that answered and proved their keys, and what went wrong with the others.
    With a trust store, paired peers too (the trusted radius; they take precedence over the same
    node found on the LAN, and those that answer are noted as seen)."""
    paired = trust.all() if trust is not None else []
    hints: list[tuple[str, int, str, str | None]] = []
    problems: list[str] = []
    if browse:
        from hearth.discovery.mdns import Browser

        browser = await asyncio.to_thread(Browser)
        try:
            await asyncio.sleep(wait)
            for rec in browser.peers():
                hints.append((rec.addresses[0], rec.port, "mdns", rec.node_id))
            problems.extend(browser.errors)
        finally:
            await asyncio.to_thread(browser.close)
    for spec in static or []:
        try:
            at = Endpoint.parse(spec)
        except ValueError as exc:
            problems.append(f"static peer: {exc}")
            continue
        hints.append((at.host, at.port, "static", None))
    async with NodeClient(identity) as nodes:
        results = await asyncio.gather(
            *(check_paired(nodes, local_rpc, t, via_tunnel) for t in paired),
            *(checked_or_problem(nodes, a, p, s, local_rpc, c) for a, p, s, c in hints))
    answered = [r.record.node_id for r in results if not isinstance(r, str) and r.radius is Radius.TRUSTED]
    if trust is not None and answered:
        await asyncio.to_thread(trust.seen, *answered)
    peers: dict[str, Peer] = {}
    for res in results:
        if isinstance(res, str):
            problems.append(res)
        elif res.record.node_id != exclude and res.record.node_id not in peers:
            peers[res.record.node_id] = res
    return sorted(peers.values(), key=lambda p: p.record.name), problems


