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

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth import __version__
from hearth.discovery.records import DeviceInfo, PeerRecord
from hearth.errors import HearthError, InvalidRequest
from hearth.ggml.hello import RpcVersion
from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.net.asgi_body import read_body, replaying
from hearth.net.http_errors import hearth_error_response, install_error_handlers
from hearth.node_api import wire
from hearth.node_api.feed import Feed
from hearth.node_api.feed_sse import StreamLimit, event_stream, heartbeat_s, parse_since
from hearth.node_api.status import NODE_EVENTS_PATH
from hearth.node_api.wire import Granted, HeldLease, LeaseId, LeaseRequest, NodeStatus, ProveAnswer, ProveRequest
from hearth.pairing.signed import NotPaired, Unsigned, Verifier
from hearth.pairing.trust import TrustedPeer
from hearth.rpc_pool import control
from hearth.rpc_pool.leases import LeaseManager
from hearth.tunnel.wireguard import TUNNEL_NET
from hearth.units import human


def node_record(identity: NodeIdentity, name: str, port: int, address: str, rpc: RpcVersion,
                devices: list[DeviceInfo], manager: LeaseManager) -> PeerRecord:
    """This node as the LAN sees it: free memory is what is left of its budget, none when it is
    full (no slot, or less than a minimum lease left), so planners pass it by."""
    full = manager.full
    left = 0 if full else max(0, manager.budget - manager.leased_bytes)
    shown = tuple(DeviceInfo(d.name, min(d.free, left), d.total) for d in devices)
    return PeerRecord(identity.node_id, name, __version__, rpc, port, shown, (address,), full)


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


MAX_CONTROL_BODY = 64 * 1024


class PairedOnly:
    """Admits only requests signed by a paired identity, checked before routing and before the
    body is parsed: anyone else gets a 401 or 403 and learns nothing about the API behind it.
    Through the tunnel, the source address must also be the signer's own tunnel address."""

    def __init__(self, app: ASGIApp, verifier: Verifier[TrustedPeer], tunnel_net: ipaddress.IPv4Network) -> None:
        self.app, self.verifier, self.tunnel_net = app, verifier, tunnel_net

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            if "x-hearth-signature" not in headers:
                raise Unsigned("This node serves paired peers only: the request is not signed. "
                               "Pair with `hearth pair`.")
            body = await read_body(receive, MAX_CONTROL_BODY,
                                   Unsigned("The request body is too large for a control request."))
            if body is None:
                return
            peer = self.verifier.verify(scope["method"], scope["path"], headers, body)
            address = scope["client"][0] if scope.get("client") else ""
            if _in(address, self.tunnel_net) and address != peer.info.tunnel_address:
                raise NotPaired(f"{address} is not the tunnel address of {peer.info.name}.")
        except HearthError as exc:
            await hearth_error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = Caller(address, peer)
        await self.app(scope, replaying(body, receive), send)


def current_caller(request: Request) -> Caller:
    """The paired caller PairedOnly admitted, or on a household node, the address that asks."""
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else Caller(_address(request))


def create_agent_app(identity: NodeIdentity, name: str, port: int, address: str, rpc: RpcVersion,
                     devices: Callable[[], list[DeviceInfo]], manager: LeaseManager,
                     on_change: Callable[[PeerRecord], None] | None = None,
                     paired_only: Verifier[TrustedPeer] | None = None,
                     tunnel_net: ipaddress.IPv4Network = TUNNEL_NET, feed: Feed | None = None) -> FastAPI:
    events = feed if feed is not None else Feed()
    leases = LeaseEvents(events, manager)

    def record() -> PeerRecord:
        return node_record(identity, name, port, address, rpc, devices(), manager)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with manager.running():
                yield
        finally:
            events.close()

    app = FastAPI(title="hearth node", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    if paired_only is not None:
        app.add_middleware(PairedOnly, verifier=paired_only, tunnel_net=tunnel_net)
    # drain and stop: this machine only, answered before PairedOnly
    control.mount(app, identity, name, manager, publish=events.publish)
    by_caller = Depends(current_caller)
    install_error_handlers(app)

    def changed() -> None:
        leases.sync()
        if on_change is not None:
            on_change(record())

    manager.on_change = changed  # leases that end on their own (expiry, revocation) change the record too

    @app.get(wire.STATUS)
    async def status() -> NodeStatus:
        r = record()
        return NodeStatus.of(r, public_key=b64.encode(identity.public_key), budget=manager.budget,
                             leased_bytes=manager.leased_bytes, max_leases=manager.max_leases,
                             per_holder=manager.policy.per_holder, min_lease_bytes=manager.policy.min_bytes,
                             leases=[lease.view() for lease in manager.leases.values()])

    @app.post(wire.PROVE)
    async def prove(body: ProveRequest) -> ProveAnswer:
        try:
            nonce = b64.decode(body.nonce)
        except ValueError as exc:
            raise InvalidRequest("nonce is not base64url", param="nonce") from exc
        if not 16 <= len(nonce) <= 64:
            raise InvalidRequest("nonce must be 16 to 64 bytes", param="nonce")
        return ProveAnswer(node_id=identity.node_id, public_key=b64.encode(identity.public_key),
                           signature=b64.encode(identity.prove(nonce)))

    @app.post(wire.LEASES, status_code=201)
    async def lease(body: LeaseRequest, caller: Caller = by_caller) -> Granted:
        secret = caller.peer.secret_bytes if caller.peer else None
        granted = await manager.grant(caller.holder, caller.address, body.bytes, sealed_secret=secret)
        changed()
        return Granted(**granted.held().model_dump(), rpc_version=str(manager.rpc_version),
                       node_id=identity.node_id)

    @app.post(wire.HEARTBEAT)
    async def heartbeat(lease_id: LeaseId, caller: Caller = by_caller) -> HeldLease:
        return manager.heartbeat(lease_id, caller.holder).held()

    @app.delete(wire.LEASE, status_code=204)
    async def release(lease_id: LeaseId, caller: Caller = by_caller) -> Response:
        leases.releasing(lease_id)
        await manager.release(lease_id, caller.holder)
        changed()
        return Response(status_code=204)

    limit = StreamLimit()

    @app.get(NODE_EVENTS_PATH, response_model=None)
    async def node_events(request: Request, since: str | None = None,
                          every: float = Depends(heartbeat_s)) -> StreamingResponse:
        return event_stream(request, events, parse_since(since, request.headers.get("last-event-id")), every, limit)

    return app


class LeaseEvents:
    """lease_taken / lease_released / lease_expired on the node's feed, from the difference
    between the leases it saw last and the manager's now (grants, releases, and the expiry loop
    all end in the agent's `changed`). Lease ids appear cut short, as in the status."""

    def __init__(self, feed: Feed, manager: LeaseManager) -> None:
        self.feed, self.manager = feed, manager
        self.known: dict[str, tuple[str, int]] = {}
        self._releasing: set[str] = set()

    def releasing(self, lease_id: str) -> None:
        """A holder is giving this lease back (so its end is a release, not an expiry)."""
        if lease_id in self.manager.leases:
            self._releasing.add(lease_id)

    def sync(self) -> None:
        now = self.manager.leases
        for lid in [lid for lid in self.known if lid not in now]:
            holder, size = self.known.pop(lid)
            released = lid in self._releasing
            self._releasing.discard(lid)
            kind = "lease_released" if released else "lease_expired"
            ended = "released" if released else "ended"
            self.feed.publish(kind, f"lease {lid[:6]}… of {holder} ({human(size)}) {ended}",
                              lease=lid[:6], holder=holder, bytes=size)
        for lid, lease in now.items():
            if lid not in self.known:
                self.known[lid] = (lease.holder[:64], lease.bytes)
                self.feed.publish("lease_taken", f"{lease.holder[:64]} leased {human(lease.bytes)}", lease=lid[:6],
                                  holder=lease.holder[:64], bytes=lease.bytes)
