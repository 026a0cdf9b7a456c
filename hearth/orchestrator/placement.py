"""The leases behind one pooled engine: acquire them from the plan, keep them alive, give them back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from hearth.errors import HearthError, LinkFailed, NodeRefused, NodeUnreachable, RefusedByPeer
from hearth.ggml.process import START_TIMEOUT_S
from hearth.identity import NodeIdentity
from hearth.node_api.client import DEFAULT_TIMEOUT, NodeClient
from hearth.orchestrator.peers import Peer
from hearth.orchestrator.planner import Assignment, Plan
from hearth.pairing.signed import NotPaired, Unsigned
from hearth.pairing.trust import TrustStore
from hearth.radius import Radius
from hearth.tunnel.sealed import SealedDialer, lease_key

HEARTBEAT_S = 3.0
LEASE_WAIT_S = START_TIMEOUT_S + 5.0
"""A node answers a lease once its new RPC server answers, which may take START_TIMEOUT_S on a busy
machine: the control API's usual 5 s would give up on a node that is only slow."""
LEASE_TIMEOUT = httpx.Timeout(DEFAULT_TIMEOUT, read=LEASE_WAIT_S)
"""Connecting still fails after the usual 5 s (a node that vanished); only the answer may take long."""
log = logging.getLogger("hearth.pool")


class LeaseFailed(HearthError):
    """A lease the plan needs could not be had; the leaves say whether the node was silent or said no."""

    http_status = 503
    code = "lease_failed"


class LeaseUnanswered(LeaseFailed, LinkFailed):
    """The node did not answer the lease request: check that its `hearth node` runs, or plan without it."""


class LeaseDenied(LeaseFailed, RefusedByPeer):
    """The node answered no (full, this machine holds its share, or not paired): plan without it."""


@dataclass(frozen=True)
class Held:
    peer: Peer
    lease_id: str
    endpoint: str
    """Where the engine connects: the node's gate, or this machine's end of a sealed tunnel."""
    bytes: int
    dialer: SealedDialer | None = None


LOST = (NodeUnreachable, Unsigned, NotPaired)
"""The agent does not answer, or refuses us (unpaired). Any other answer, LeaseNotFound above
all (the lease ended), means the node is there and can be leased again."""


async def _answers(nodes: NodeClient, h: Held, timeout: float | None = None) -> bool:
    try:
        await nodes.heartbeat(h.peer.agent, h.lease_id, timeout=timeout)
    except LOST:
        return False
    except NodeRefused as exc:  # a refusal this build cannot name: 401/403 mean it will not have us
        return exc.status not in (401, 403)
    except HearthError:  # LeaseNotFound, or an answer this build cannot read: the agent is there
        return True
    return True


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
        self._nodes = NodeClient(identity)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(h.endpoint for h in self.held)

    async def acquire(self) -> None:
        """One lease per remote assignment, in the plan's (the engine's) device order."""
        async def one(a: Assignment) -> Held:
            peer = self.peers[a.node.node_id]
            try:
                granted = await self._nodes.lease(peer.agent, a.bytes, timeout=LEASE_TIMEOUT)
            except NodeUnreachable as exc:
                raise LeaseUnanswered(f"{peer.record.name} did not answer the lease request: {exc.message}") from exc
            except HearthError as exc:
                raise LeaseDenied(f"{peer.record.name} refused a lease: {exc.message}") from exc
            if granted.transport != "sealed":
                return Held(peer, granted.lease_id, granted.endpoint, a.bytes)
            if peer.secret is None:
                raise LeaseDenied(f"{peer.record.name} offers a sealed tunnel, but it is not paired with this machine; "
                                  "pair with it (`hearth pair`) or plan without it.")
            gate = granted.gate
            dialer = SealedDialer(gate.host, gate.port, lease_key(peer.secret, granted.lease_id))
            await dialer.start()
            return Held(peer, granted.lease_id, dialer.endpoint, a.bytes, dialer)

        # Each node starts its RPC server in parallel; keep what was granted to give it back on failure.
        results = await asyncio.gather(*(one(a) for a in self.plan.remote), return_exceptions=True)
        self.held = [r for r in results if isinstance(r, Held)]
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.release()
            raise failures[0]
        self._tasks = [asyncio.create_task(self._heartbeats())]
        if self.trust is not None and any(h.peer.radius is Radius.TRUSTED for h in self.held):
            self._tasks.append(asyncio.create_task(self._watch_trust()))

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            for h in list(self.held):
                if not await _answers(self._nodes, h) and self.on_lost is not None:
                    self.on_lost(h.peer.record.node_id)

    def unpaired(self) -> set[str]:
        """Trusted nodes of this placement that this machine has since unpaired."""
        if self.trust is None:
            return set()
        paired = {p.node_id for p in self.trust.all()}
        return {h.peer.record.node_id for h in self.held
                if h.peer.radius is Radius.TRUSTED and h.peer.record.node_id not in paired}

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

        unpaired = self.unpaired()
        asked = [h for h in self.held if h.peer.record.node_id not in unpaired]
        alive = await asyncio.gather(*(_answers(self._nodes, h, timeout=2.0) for h in asked))
        return unpaired | {h.peer.record.node_id for h, ok in zip(asked, alive, strict=True) if not ok}

    async def release(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

        async def give_back(h: Held) -> None:
            try:
                await self._nodes.release(h.peer.agent, h.lease_id, timeout=2.0)
            except HearthError as exc:  # the lease ends on its own when its heartbeats stop
                log.debug("giving back lease %s… on %s: %s", h.lease_id[:8], h.peer.record.name, exc.message)

        unpaired = self.unpaired()  # no longer ours to talk to
        await asyncio.gather(*(give_back(h) for h in self.held if h.peer.record.node_id not in unpaired))
        await asyncio.gather(*(h.dialer.close() for h in self.held if h.dialer is not None))
        self.held = []
        await self._nodes.aclose()
