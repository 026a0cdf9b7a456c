"""Leases on a node: one ggml RPC server per lease, expiring without heartbeats.

The RPC server itself listens on 127.0.0.1 only. A lessee elsewhere reaches it through a gate
opened for that lease alone: a relay admitting only the lessee's address (on the LAN, or on the
WireGuard tunnel address where only that peer's key can send from its address), or, for a
paired peer without WireGuard, a sealed tunnel keyed from the pairing secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from hearth.errors import HearthError
from hearth.rpc_pool.hello import RpcVersion
from hearth.rpc_pool.process import RpcServerProcess
from hearth.rpc_pool.relay import Relay
from hearth.tunnel.sealed import SealedGate, lease_key


class LeaseRefused(HearthError):
    """The node cannot grant the lease (memory, count); the message says which."""

    http_status = 409
    error_type = "invalid_request_error"
    code = "lease_refused"


class LeaseNotFound(HearthError):
    """No such lease (expired, released, or never granted)."""

    http_status = 404
    error_type = "invalid_request_error"
    code = "lease_not_found"


@dataclass
class Lease:
    lease_id: str
    holder: str
    """The lessee: its node id when paired, else its address."""
    bytes: int
    server: RpcServerProcess
    gate: Relay | SealedGate | None
    endpoint: str
    expires: float
    granted: float = field(default_factory=time.time)

    def public(self, holder: bool = False) -> dict[str, object]:
        """The lease as shown; its full id (which can renew or release it) only to its holder."""
        shown = self.lease_id if holder else self.lease_id[:6] + "…"
        transport = "sealed" if isinstance(self.gate, SealedGate) else "plain"
        return {"lease_id": shown, "holder": self.holder, "bytes": self.bytes, "endpoint": self.endpoint,
                "transport": transport, "expires_in": round(max(0.0, self.expires - time.monotonic()), 1),
                "refused_connections": self.gate.refused if self.gate else 0}


class LeaseManager:
    def __init__(self, bind: str, budget: int, cache_dir: Path, log_dir: Path, threads: int,
                 ttl: float = 15.0, max_leases: int = 4, sealed: bool = False, device: str | None = None) -> None:
        self.bind = bind
        self.device = device
        """The interface gates accept on (the WireGuard interface for paired peers)."""
        self.sealed = sealed
        """Paired peers reach this node's RPC servers through sealed tunnels (no WireGuard here)."""
        self.budget = budget
        self.cache_dir = cache_dir
        self.log_dir = log_dir
        self.threads = threads
        self.ttl = ttl
        self.max_leases = max_leases
        self.leases: dict[str, Lease] = {}
        self.rpc_version: RpcVersion | None = None
        self._lock = asyncio.Lock()

    @property
    def leased_bytes(self) -> int:
        return sum(lease.bytes for lease in self.leases.values())

    async def grant(self, holder: str, admit: str, want: int, sealed_secret: bytes | None = None) -> Lease:
        """A lease for `holder`: a relay admitting the address `admit`, or with a pairing secret
        on a node without WireGuard, a sealed tunnel only that peer can open."""
        async with self._lock:
            if len(self.leases) >= self.max_leases:
                raise LeaseRefused(f"This node already serves {len(self.leases)} leases, its limit.")
            if self.leased_bytes + want > self.budget:
                raise LeaseRefused(
                    f"This node has {self.budget - self.leased_bytes} bytes left of its --max-memory budget; "
                    f"the lease asks for {want}."
                )
            lease_id = secrets.token_urlsafe(18)
            server = RpcServerProcess("127.0.0.1", cache_dir=self.cache_dir, threads=self.threads,
                                      log_path=self.log_dir / f"rpc-{lease_id[:8]}.log")
            self.rpc_version = await asyncio.to_thread(server.start)
            gate: Relay | SealedGate | None = None
            endpoint = server.endpoint
            if sealed_secret is not None and self.sealed:
                gate = SealedGate(self.bind, lease_key(sealed_secret, lease_id), server.port)
            elif not ipaddress.ip_address(self.bind).is_loopback:
                gate = Relay(self.bind, admit, server.port, self.device)
            if gate is not None:
                port = await gate.start()
                endpoint = f"[{self.bind}]:{port}" if ":" in self.bind else f"{self.bind}:{port}"
            lease = Lease(lease_id, holder, want, server, gate, endpoint, time.monotonic() + self.ttl)
            self.leases[lease_id] = lease
            return lease

    def _held_by(self, lease_id: str, holder: str | None) -> Lease | None:
        lease = self.leases.get(lease_id)
        # Only the lessee may renew or release a lease (others see "not found").
        return lease if lease is not None and (holder is None or holder == lease.holder) else None

    def heartbeat(self, lease_id: str, holder: str | None = None) -> Lease:
        lease = self._held_by(lease_id, holder)
        if lease is None or not lease.server.alive:
            raise LeaseNotFound(f"Lease {lease_id[:8]}… is not active; ask for a new one.")
        lease.expires = time.monotonic() + self.ttl
        return lease

    async def release(self, lease_id: str, holder: str | None = None) -> None:
        if self._held_by(lease_id, holder) is None:
            raise LeaseNotFound(f"Lease {lease_id[:8]}… is not active.")
        lease = self.leases.pop(lease_id)
        await self._end(lease)

    async def _end(self, lease: Lease) -> None:
        if lease.gate is not None:
            await lease.gate.close()
        await asyncio.to_thread(lease.server.stop)

    async def revoke(self, holder: str) -> int:
        """End every lease of an unpaired peer at once: gates and live connections first."""
        gone = [lid for lid, lease in self.leases.items() if lease.holder == holder]
        ended = [self.leases.pop(lid) for lid in gone]
        await asyncio.gather(*(lease.gate.close() for lease in ended if lease.gate is not None))
        await asyncio.gather(*(asyncio.to_thread(lease.server.stop) for lease in ended))
        return len(ended)

    async def expire(self) -> list[str]:
        now = time.monotonic()
        gone = [lid for lid, lease in self.leases.items() if lease.expires < now or not lease.server.alive]
        for lid in gone:
            await self._end(self.leases.pop(lid))
        return gone

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Expire leases in the background; end them all on the way out."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(0.5)
                await self.expire()

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for lid in list(self.leases):
                await self._end(self.leases.pop(lid))
