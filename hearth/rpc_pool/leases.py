"""Leases on a node: one ggml RPC server per lease, expiring without heartbeats.

The RPC server itself listens on 127.0.0.1 only. A lessee elsewhere reaches it through a gate
opened for that lease alone: a relay admitting only the lessee's address (on the LAN, or on the
WireGuard tunnel address where only that peer's key can send from its address), or, for a
paired peer without WireGuard, a sealed tunnel keyed from the pairing secret.

Grant, heartbeat, release, revoke and expiry may interleave in any order: a lease leaves
`leases` in one step with no await in between (whoever removes it ends it, once), and the
expiry loop logs what fails and goes on, since nothing would expire leases after it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hearth.ggml.hello import RpcVersion
from hearth.ggml.process import RpcServer, RpcServerProcess
from hearth.net.endpoint import Endpoint
from hearth.node_api.errors import LeaseNotFound, LeaseRefused
from hearth.node_api.wire import HeldLease, LeaseView
from hearth.rpc_pool.cache import RpcCache
from hearth.rpc_pool.policy import LeasePolicy
from hearth.rpc_pool.relay import Relay
from hearth.tunnel.sealed import SealedGate, lease_key

log = logging.getLogger("hearth.node")
T = TypeVar("T")
TICK_S = 0.5
DEFAULT_CACHE_BYTES = 2 * 1024**3
ServerFactory = Callable[[Path | None, Path, int], RpcServer]
"""(cache folder or None, log path, bytes the lease may allocate) -> a server not yet started."""
Offload = Callable[..., Awaitable[Any]]


@dataclass(eq=False)
class Lease:
    lease_id: str
    holder: str
    """The lessee: its node id when paired, else its address."""
    bytes: int
    """What the lease asked for (at least the minimum); its server may map a bounded slack more."""
    server: RpcServer
    gate: Relay | SealedGate | None
    endpoint: str
    expires: float
    granted: float = field(default_factory=time.time)

    @property
    def cost(self) -> int:
        """What the lease counts against the budget: its size, or what its server really holds."""
        return max(self.bytes, self.server.used())

    def view(self) -> LeaseView:
        """The lease as anyone may see it: its id cut short (the full id renews or releases it)."""
        return LeaseView(**self._shown(self.lease_id[:6] + "…"))

    def held(self) -> HeldLease:
        """The lease as its holder sees it, with its full id."""
        return HeldLease(**self._shown(self.lease_id))

    def _shown(self, lease_id: str) -> dict[str, Any]:
        transport = "sealed" if isinstance(self.gate, SealedGate) else "plain"
        return {"lease_id": lease_id, "holder": self.holder, "bytes": self.bytes, "used": self.server.used(),
                "endpoint": self.endpoint, "transport": transport,
                "expires_in": round(max(0.0, self.expires - time.monotonic()), 1),
                "refused_connections": self.gate.refused if self.gate else 0}


class LeaseManager:
    def __init__(self, bind: str, budget: int, cache_dir: Path, log_dir: Path, threads: int,
                 ttl: float = 15.0, max_leases: int = 4, sealed: bool = False, device: str | None = None, *,
                 cache_limit: int = DEFAULT_CACHE_BYTES, server_factory: ServerFactory | None = None,
                 clock: Callable[[], float] = time.monotonic, offload: Offload = asyncio.to_thread,
                 tick: float = TICK_S) -> None:
        self.bind = bind
        self.device = device
        """The interface gates accept on (the WireGuard interface for paired peers)."""
        self.sealed = sealed
        """Paired peers reach this node's RPC servers through sealed tunnels (no WireGuard here)."""
        self.policy = LeasePolicy(budget, max_leases)
        self.cache = RpcCache(cache_dir, cache_limit)
        self.log_dir = log_dir
        self.threads = threads
        self.ttl = ttl
        self.tick = tick
        self.leases: dict[str, Lease] = {}
        self.rpc_version: RpcVersion | None = None
        self.on_change: Callable[[], None] | None = None
        """Called when leases end without a request (expiry, a dead server, revocation)."""
        self.ticks = 0
        """Rounds of the expiry loop so far (it must keep going)."""
        self._factory = server_factory or self._process
        self._clock = clock
        self._offload = offload
        self._lock = asyncio.Lock()
        self._closed = False
        self._ending: set[asyncio.Task[None]] = set()
        self._starting: set[RpcServer] = set()
        self._announced: tuple[bool, int] | None = None

    @property
    def budget(self) -> int:
        return self.policy.budget

    @property
    def max_leases(self) -> int:
        return self.policy.max_leases

    @property
    def leased_bytes(self) -> int:
        return sum(lease.cost for lease in self.leases.values())

    @property
    def full(self) -> bool:
        return self._closed or self.policy.full(self.leases.values())

    def _process(self, cache: Path | None, log_path: Path, max_bytes: int) -> RpcServer:
        return RpcServerProcess("127.0.0.1", cache_dir=cache, threads=self.threads, log_path=log_path,
                                max_bytes=max_bytes)

    async def grant(self, holder: str, admit: str, want: int, sealed_secret: bytes | None = None) -> Lease:
        """A lease for `holder`: a relay admitting the address `admit`, or with a pairing secret
        on a node without WireGuard, a sealed tunnel only that peer can open."""
        async with self._lock:
            if self._closed:
                raise LeaseRefused("This node is shutting down; ask another node.")
            await self.expire()  # a dead or overdue lease must not hold a slot a moment longer
            charged = self.policy.charge(want)
            refusal = self.policy.refusal(self.leases.values(), holder, charged)
            if refusal is not None:
                raise LeaseRefused(refusal)
            lease_id = secrets.token_urlsafe(18)
            folder = await self._offload(self.cache.folder, holder)
            server = self._factory(folder, self.log_dir / f"rpc-{lease_id[:8]}.log", charged)
            gate: Relay | SealedGate | None = None
            self._starting.add(server)  # shutdown stops it, rather than wait out a slow start
            try:
                self.rpc_version = await self._offload(server.start)
                endpoint = server.endpoint
                if sealed_secret is not None and self.sealed:
                    gate = SealedGate(self.bind, lease_key(sealed_secret, lease_id), server.port)
                elif not ipaddress.ip_address(self.bind).is_loopback:
                    gate = Relay(self.bind, admit, server.port, self.device)
                if gate is not None:
                    port = await gate.start()
                    endpoint = str(Endpoint(self.bind, port))
                if self._closed:
                    raise LeaseRefused("This node is shutting down; ask another node.")
            except BaseException:
                # Failed, refused or cancelled half-way: nothing of this lease may stay behind.
                # stop() is safe while start() still runs in its thread: that start then fails.
                server.stop()
                if gate is not None:
                    await asyncio.shield(self._close_gate(gate))
                raise
            finally:
                self._starting.discard(server)
            lease = Lease(lease_id, holder, charged, server, gate, endpoint, self._clock() + self.ttl)
            self.leases[lease_id] = lease
            return lease

    def _held_by(self, lease_id: str, holder: str | None) -> Lease | None:
        lease = self.leases.get(lease_id)
        # Only the lessee may renew or release a lease (others see "not found").
        return lease if lease is not None and (holder is None or holder == lease.holder) else None

    def heartbeat(self, lease_id: str, holder: str | None = None) -> Lease:
        lease = self._held_by(lease_id, holder)
        # An overdue lease is over even before the loop reaps it: a heartbeat cannot revive it.
        if lease is None or not lease.server.alive or lease.expires < self._clock():
            raise LeaseNotFound(f"Lease {lease_id[:8]}… is not active; ask for a new one.")
        lease.expires = self._clock() + self.ttl
        return lease

    async def release(self, lease_id: str, holder: str | None = None) -> None:
        if self._held_by(lease_id, holder) is None:
            raise LeaseNotFound(f"Lease {lease_id[:8]}… is not active.")
        await self._retire([self.leases.pop(lease_id)])

    async def revoke(self, holder: str) -> int:
        """End every lease of an unpaired peer at once: gates and live connections first."""
        ended = [self.leases.pop(lid) for lid, lease in list(self.leases.items()) if lease.holder == holder]
        await self._retire(ended)
        return len(ended)

    async def expire(self) -> list[str]:
        now = self._clock()
        gone = [lid for lid, lease in self.leases.items() if lease.expires < now or not lease.server.alive]
        await self._retire([self.leases.pop(lid) for lid in gone])
        return gone

    async def _retire(self, ended: list[Lease]) -> None:
        """End leases already taken out of `leases`. The ending runs as its own task, so that a
        cancelled caller (a closed connection, the loop at shutdown) cannot leave a server
        running; shutdown waits for every such task."""
        if not ended:
            return
        task = asyncio.ensure_future(self._end(ended))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)
        self._changed()
        await asyncio.shield(task)

    async def _close_gate(self, gate: Relay | SealedGate) -> None:
        try:
            await gate.close()
        except Exception:
            log.exception("closing a lease's gate failed")

    async def _stop(self, server: RpcServer) -> None:
        try:
            await self._offload(server.stop)
        except Exception:
            log.exception("stopping the RPC server at %s failed", server.endpoint)

    async def _end(self, ended: list[Lease]) -> None:
        await asyncio.gather(*(self._close_gate(lease.gate) for lease in ended if lease.gate is not None))
        await asyncio.gather(*(self._stop(lease.server) for lease in ended))

    def _changed(self) -> None:
        self._announced = (self.full, self.leased_bytes >> 20)
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:
            log.exception("announcing the node's new state failed")

    async def _round(self) -> None:
        await self.expire()
        if self._announced != (self.full, self.leased_bytes >> 20):
            self._changed()  # a server grew (or shrank): what the node has left changed
        if self.cache.enabled:
            await self._offload(self.cache.enforce)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Expire leases and trim the cache in the background; end every lease on the way out,
        also those whose grant is under way."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.tick)
                try:
                    await self._round()
                except Exception:
                    log.exception("the lease expiry round failed; trying again in %.1f s", self.tick)
                self.ticks += 1

        task = asyncio.create_task(loop(), name="lease-expiry")
        try:
            yield
        finally:
            await self.shutdown(task)

    async def shutdown(self, loop: asyncio.Task[None] | None = None) -> None:
        self._closed = True
        for server in list(self._starting):
            server.stop()  # safe while its start runs: the grant then fails and cleans up
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        async with self._lock:  # a grant under way sees _closed and ends its own server
            ended = list(self.leases.values())
            self.leases.clear()
            await self._retire(ended)
            while pending := [task for task in self._ending if not task.done()]:
                await asyncio.gather(*pending, return_exceptions=True)
