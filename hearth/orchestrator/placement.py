"""The leases behind one pooled engine: acquire them from the plan, keep them alive, give them back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from hearth.errors import HearthError
from hearth.identity import NodeIdentity
from hearth.net.endpoint import Endpoint
from hearth.orchestrator.peers import Peer, signed_client
from hearth.orchestrator.planner import Assignment, Plan
from hearth.pairing.trust import TrustStore
from hearth.tunnel.sealed import SealedDialer, lease_key

HEARTBEAT_S = 3.0


class LeaseFailed(HearthError):
    """A node refused or could not grant a lease the plan needs."""

    http_status = 503
    code = "lease_failed"


@dataclass(frozen=True)
class Held:
    peer: Peer
    lease_id: str
    endpoint: str
    """Where the engine connects: the node's gate, or this machine's end of a sealed tunnel."""
    bytes: int
    dialer: SealedDialer | None = None


def _gone(r: httpx.Response) -> bool:
    """The agent refuses us (unpaired); 404 only means the lease ended and the node can lease again."""
    return r.status_code in (401, 403)


class Placement:
    def __init__(self, plan: Plan, peers: dict[str, Peer], identity: NodeIdentity | None = None,
                 on_lost: Callable[[str], None] | None = None, trust: TrustStore | None = None) -> None:
        self.plan = plan
        self.peers = peers
        self.held: list[Held] = []
        self.on_lost = on_lost
        """Called with a node id when its agent stops answering heartbeats or refuses us, or when
        this machine unpairs it."""
        self.trust = trust
        self._client = signed_client(identity)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(h.endpoint for h in self.held)

    async def acquire(self) -> None:
        """One lease per remote assignment, in the plan's (the engine's) device order."""
        async def one(a: Assignment) -> Held:
            peer = self.peers[a.node.node_id]
            r = await self._client.post(f"{peer.base_url}/v1/leases", json={"bytes": a.bytes})
            if r.status_code != 201:
                detail = r.json().get("error", {}).get("message", r.text) if r.content else r.reason_phrase
                raise LeaseFailed(f"{peer.record.name} refused a lease: {detail}")
            body = r.json()
            lease_id, endpoint = str(body["lease_id"]), str(body["endpoint"])
            if body.get("transport") != "sealed":
                return Held(peer, lease_id, endpoint, a.bytes)
            if peer.secret is None:
                raise LeaseFailed(f"{peer.record.name} offers a sealed tunnel, but it is not paired with this machine.")
            gate = Endpoint.parse(endpoint)
            dialer = SealedDialer(gate.host, gate.port, lease_key(peer.secret, lease_id))
            await dialer.start()
            return Held(peer, lease_id, dialer.endpoint, a.bytes, dialer)

        # Each node starts its RPC server in parallel; keep what was granted to give it back on failure.
        results = await asyncio.gather(*(one(a) for a in self.plan.remote), return_exceptions=True)
        self.held = [r for r in results if isinstance(r, Held)]
        failures = [r for r in results if isinstance(r, BaseException)]
        try:
            if failures:
                raise failures[0]
        except httpx.HTTPError as exc:
            await self.release()
            raise LeaseFailed(f"A node did not answer the lease request: {exc}") from exc
        except LeaseFailed:
            await self.release()
            raise
        self._tasks = [asyncio.create_task(self._heartbeats())]
        if self.trust is not None and any(h.peer.radius == "trusted" for h in self.held):
            self._tasks.append(asyncio.create_task(self._watch_trust()))

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            for h in list(self.held):
                try:
                    lost = _gone(await self._client.post(f"{h.peer.base_url}/v1/leases/{h.lease_id}/heartbeat"))
                except httpx.HTTPError:
                    lost = True
                if lost and self.on_lost is not None:
                    self.on_lost(h.peer.record.node_id)

    def unpaired(self) -> set[str]:
        """Trusted nodes of this placement that this machine has since unpaired."""
        if self.trust is None:
            return set()
        paired = {p.node_id for p in self.trust.all()}
        return {h.peer.record.node_id for h in self.held
                if h.peer.radius == "trusted" and h.peer.record.node_id not in paired}

    async def _watch_trust(self, interval: float = 0.2) -> None:
        """`hearth unpair` here: stop using that peer at once (its sealed tunnels close now; over
        WireGuard, unpair has already removed its peer) and fail over."""
        assert self.trust is not None
        seen = self.trust.stamp()
        while True:
            await asyncio.sleep(interval)
            stamp = self.trust.stamp()
            if stamp == seen:
                continue
            seen = stamp
            for node in await asyncio.to_thread(self.unpaired):
                await asyncio.gather(*(h.dialer.close() for h in self.held
                                       if h.dialer is not None and h.peer.record.node_id == node))
                if self.on_lost is not None:
                    self.on_lost(node)

    async def gone_nodes(self) -> set[str]:
        """Nodes whose agent no longer answers. A node whose agent answers can be leased again,
        even if the RPC server of its lease died."""

        async def answers(h: Held) -> bool:
            try:
                r = await self._client.post(f"{h.peer.base_url}/v1/leases/{h.lease_id}/heartbeat", timeout=2.0)
            except httpx.HTTPError:
                return False
            return not _gone(r)

        unpaired = self.unpaired()
        asked = [h for h in self.held if h.peer.record.node_id not in unpaired]
        alive = await asyncio.gather(*(answers(h) for h in asked))
        return unpaired | {h.peer.record.node_id for h, ok in zip(asked, alive, strict=True) if not ok}

    async def release(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

        async def give_back(h: Held) -> None:
            with contextlib.suppress(httpx.HTTPError):
                await self._client.delete(f"{h.peer.base_url}/v1/leases/{h.lease_id}", timeout=2.0)

        unpaired = self.unpaired()  # no longer ours to talk to
        await asyncio.gather(*(give_back(h) for h in self.held if h.peer.record.node_id not in unpaired))
        await asyncio.gather(*(h.dialer.close() for h in self.held if h.dialer is not None))
        self.held = []
        await self._client.aclose()
