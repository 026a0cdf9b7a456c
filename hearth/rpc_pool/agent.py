"""The node agent's control API: status, proof of identity, leases.

Runs on every machine of the household (`hearth node`). Discovery records are only hints;
`POST /v1/node/prove` lets an orchestrator check that the node holds the key its id names.
A node that admits paired peers only (`--admit paired`) answers nothing but requests signed by
a paired identity key (hearth.pairing.signed); its leases belong to that identity.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hearth import __version__
from hearth.discovery.records import DeviceInfo, PeerRecord
from hearth.errors import InvalidRequest
from hearth.identity import NodeIdentity, b64, unb64
from hearth.pairing.signed import NotPaired, Verifier
from hearth.pairing.trust import TrustedPeer
from hearth.rpc_pool.hello import RpcVersion
from hearth.rpc_pool.leases import LeaseManager
from hearth.server.errors import install_error_handlers

LEASE_ID = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class ProveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nonce: str = Field(min_length=22, max_length=100, description="16 to 64 random bytes, base64url")


class LeaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bytes: int = Field(ge=0, le=2**50, description="memory the lease will use (model share + KV)")


def node_record(identity: NodeIdentity, name: str, port: int, address: str, rpc: RpcVersion,
                devices: list[DeviceInfo], manager: LeaseManager) -> PeerRecord:
    """This node as the LAN sees it: free memory is what is left of its budget."""
    left = max(0, manager.budget - manager.leased_bytes)
    shown = tuple(DeviceInfo(d.name, min(d.free, left), d.total) for d in devices)
    return PeerRecord(identity.node_id, name, __version__, rpc, port, shown, (address,))


@dataclass(frozen=True)
class Caller:
    address: str
    """The IP the request came from."""
    peer: TrustedPeer | None = None
    """The paired identity that signed it (paired mode only)."""

    @property
    def holder(self) -> str:
        """Who owns the leases this caller takes: its identity when paired, else its address."""
        return self.peer.node_id if self.peer else self.address


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _in(address: str, net: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_address(address) in net
    except ValueError:  # no peer address (a unix socket, a test client)
        return False


def paired_callers(verifier: Verifier[TrustedPeer], tunnel_net: ipaddress.IPv4Network) -> Callable[..., Any]:
    """A dependency admitting only signed requests of paired peers; through the tunnel, the
    source address must also be the signer's own tunnel address."""

    async def caller(request: Request) -> Caller:
        body = await request.body()
        peer = verifier.verify(request.method, request.url.path, request.headers, body)
        address = _address(request)
        if _in(address, tunnel_net) and address != peer.info.tunnel_address:
            raise NotPaired(f"{address} is not the tunnel address of {peer.info.name}.")
        return Caller(address, peer)

    return caller


async def lan_callers(request: Request) -> Caller:
    return Caller(_address(request))


def create_agent_app(identity: NodeIdentity, name: str, port: int, address: str, rpc: RpcVersion,
                     devices: Callable[[], list[DeviceInfo]], manager: LeaseManager,
                     on_change: Callable[[PeerRecord], None] | None = None,
                     callers: Callable[..., Any] = lan_callers) -> FastAPI:
    def record() -> PeerRecord:
        return node_record(identity, name, port, address, rpc, devices(), manager)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with manager.running():
            yield

    app = FastAPI(title="hearth node", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, dependencies=[Depends(callers)])
    by_caller = Depends(callers)  # cached per request: a signature is checked (and its nonce spent) once
    install_error_handlers(app)

    def changed() -> None:
        if on_change is not None:
            on_change(record())

    @app.get("/v1/node")
    async def status() -> dict[str, Any]:
        r = record()
        return {**r.to_properties(), "public_key": b64(identity.public_key), "budget": manager.budget,
                "leased_bytes": manager.leased_bytes, "devices": [vars(d) for d in r.devices],
                "leases": [lease.public() for lease in manager.leases.values()]}

    @app.post("/v1/node/prove")
    async def prove(body: ProveRequest) -> dict[str, str]:
        try:
            nonce = unb64(body.nonce)
        except ValueError as exc:
            raise InvalidRequest("nonce is not base64url", param="nonce") from exc
        if not 16 <= len(nonce) <= 64:
            raise InvalidRequest("nonce must be 16 to 64 bytes", param="nonce")
        return {"node_id": identity.node_id, "public_key": b64(identity.public_key),
                "signature": b64(identity.prove(nonce))}

    @app.post("/v1/leases", status_code=201)
    async def lease(body: LeaseRequest, caller: Caller = by_caller) -> dict[str, object]:
        secret = caller.peer.secret_bytes if caller.peer else None
        granted = await manager.grant(caller.holder, caller.address, body.bytes, sealed_secret=secret)
        changed()
        return {**granted.public(holder=True), "rpc_version": str(manager.rpc_version), "node_id": identity.node_id}

    @app.post("/v1/leases/{lease_id}/heartbeat")
    async def heartbeat(lease_id: LEASE_ID, caller: Caller = by_caller) -> dict[str, object]:
        return manager.heartbeat(lease_id, caller.holder).public(holder=True)

    @app.delete("/v1/leases/{lease_id}", status_code=204)
    async def release(lease_id: LEASE_ID, caller: Caller = by_caller) -> Response:
        await manager.release(lease_id, caller.holder)
        changed()
        return Response(status_code=204)

    return app
