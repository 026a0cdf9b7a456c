"""Finding the household's nodes: mDNS hints and static peers, each proven by its key."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import httpx

from hearth.discovery.records import PeerRecord, RecordError, parse_record
from hearth.errors import HearthError
from hearth.identity import ForgedNode, b64, unb64, verify_proof
from hearth.rpc_pool.hello import RpcVersion


@dataclass(frozen=True)
class Peer:
    record: PeerRecord
    source: str
    """'mdns' or 'static'."""
    verified: bool
    compatible: bool
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.verified and self.compatible

    @property
    def address(self) -> str:
        return self.record.addresses[0]

    @property
    def base_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.record.port}"

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {"node_id": r.node_id, "name": r.name, "address": self.address, "port": r.port,
                "version": r.version, "rpc_version": str(r.rpc), "free_bytes": r.free_bytes,
                "devices": [vars(d) for d in r.devices], "source": self.source, "verified": self.verified,
                "compatible": self.compatible, "problem": self.problem, "radius": "local"}


def _props(status: dict[str, Any]) -> dict[bytes, bytes | None]:
    return {k.encode(): str(v).encode() for k, v in status.items() if k in ("id", "name", "v", "rpc", "port", "dev")}


async def check(client: httpx.AsyncClient, address: str, port: int, source: str, local_rpc: RpcVersion,
                claimed: PeerRecord | None = None) -> Peer:
    """Fresh status from the node's control API, then proof that it holds the key its id names."""
    host = f"[{address}]" if ":" in address else address
    base = f"http://{host}:{port}"
    status = (await client.get(f"{base}/v1/node")).raise_for_status().json()
    record = parse_record(_props(status), [address])
    if claimed is not None and claimed.node_id != record.node_id:
        raise ForgedNode(f"{address}:{port} advertised node {claimed.node_id} but its agent is {record.node_id}.")
    nonce = os.urandom(32)
    proof = (await client.post(f"{base}/v1/node/prove", json={"nonce": b64(nonce)})).raise_for_status().json()
    verify_proof(record.node_id, unb64(str(proof["public_key"])), nonce, unb64(str(proof["signature"])))
    compatible = local_rpc.serves(record.rpc)
    problem = None if compatible else (
        f"speaks ggml RPC {record.rpc}, this build {local_rpc}: update hearth on one of them")
    return Peer(record, source, True, compatible, problem)


async def checked_or_problem(client: httpx.AsyncClient, address: str, port: int, source: str, local_rpc: RpcVersion,
                   claimed: PeerRecord | None) -> Peer | str:
    try:
        return await check(client, address, port, source, local_rpc, claimed)
    except (httpx.HTTPError, RecordError, ForgedNode, ValueError, KeyError) as exc:
        detail = exc.message if isinstance(exc, HearthError) else f"{type(exc).__name__}: {exc}"
        return f"{address}:{port} ({source}): {detail}"


async def discover(local_rpc: RpcVersion, *, wait: float = 2.0, static: list[str] | None = None,
                   browse: bool = True, exclude: str | None = None) -> tuple[list[Peer], list[str]]:
    """Peers that answered and proved their keys, and what went wrong with the others."""
    hints: list[tuple[str, int, str, PeerRecord | None]] = []
    problems: list[str] = []
    if browse:
        from hearth.discovery.mdns import Browser

        browser = await asyncio.to_thread(Browser)
        try:
            await asyncio.sleep(wait)
            for rec in browser.peers():
                hints.append((rec.addresses[0], rec.port, "mdns", rec))
            problems.extend(browser.errors)
        finally:
            await asyncio.to_thread(browser.close)
    for spec in static or []:
        host, _, port = spec.rpartition(":")
        hints.append((host.strip("[]"), int(port), "static", None))
    async with httpx.AsyncClient(timeout=5.0) as client:
        results = await asyncio.gather(*(checked_or_problem(client, a, p, s, local_rpc, c) for a, p, s, c in hints))
    peers: dict[str, Peer] = {}
    for res in results:
        if isinstance(res, str):
            problems.append(res)
        elif res.record.node_id != exclude and res.record.node_id not in peers:
            peers[res.record.node_id] = res
    return sorted(peers.values(), key=lambda p: p.record.name), problems


