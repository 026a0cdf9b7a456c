"""Answers a node could give, for httpx.MockTransport: the network cannot be made to misbehave
on cue (a body cut short, a proxy's HTML, a 20 MB status), so these play the agent's side.
Valid answers are built from the same wire models the real agent serves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from hearth.discovery.records import DeviceInfo, PeerRecord
from hearth.ggml.hello import RpcVersion
from hearth.identity import NodeIdentity
from hearth.net.b64 import decode as unb64
from hearth.net.b64 import encode as b64
from hearth.net.endpoint import Endpoint
from hearth.node_api import wire
from hearth.node_api.client import NodeClient

NODE = Endpoint("192.0.2.7", 11436)
LEASE_ID = "AbCdEfGhIjKlMnOpQrStUvWx"
Handler = Callable[[httpx.Request], httpx.Response]


def record(identity: NodeIdentity) -> PeerRecord:
    return PeerRecord(identity.node_id, "den pc", "0.1.0", RpcVersion(7, 0, 0), 11436,
                      (DeviceInfo("CPU", 8 * 10**9, 16 * 10**9),), ("192.0.2.7",))


def held(**changes: Any) -> dict[str, Any]:
    return {"lease_id": LEASE_ID, "holder": "192.0.2.1", "bytes": 1000, "used": 0,
            "endpoint": "192.0.2.7:50123", "transport": "plain", "expires_in": 15.0,
            "refused_connections": 0, **changes}


def valid(identity: NodeIdentity) -> dict[str, Any]:
    """path -> a valid answer body, as JSON-ready dicts (the prove answer signs whatever nonce)."""
    status = wire.NodeStatus.of(record(identity), public_key=b64(identity.public_key), budget=10**9,
                                leased_bytes=0, max_leases=4, per_holder=2, min_lease_bytes=16 * 2**20)
    return {wire.STATUS: json.loads(status.model_dump_json()),
            wire.LEASES: held(rpc_version="7.0.0", node_id=identity.node_id),
            wire.heartbeat_path(LEASE_ID): held()}


def agent(identity: NodeIdentity, **override: httpx.Response) -> httpx.MockTransport:
    """A well-behaved agent, but for the paths in `override` (keyed by the call's name)."""
    answers = valid(identity)
    codes = {wire.LEASES: 201, wire.lease_path(LEASE_ID): 204}
    names = {wire.STATUS: "status", wire.PROVE: "prove", wire.LEASES: "lease",
             wire.heartbeat_path(LEASE_ID): "heartbeat", wire.lease_path(LEASE_ID): "release"}

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if names.get(path) in override:
            return override[names[path]]
        if path == wire.PROVE:
            nonce = unb64(json.loads(request.content)["nonce"])
            return httpx.Response(200, json={"node_id": identity.node_id, "public_key": b64(identity.public_key),
                                             "signature": b64(identity.prove(nonce))})
        if path in answers:
            return httpx.Response(codes.get(path, 200), json=answers[path])
        if path in codes:
            return httpx.Response(codes[path])
        return httpx.Response(404, json={"error": {"message": "Not Found", "type": "invalid_request_error",
                                                   "param": None, "code": "not_found"}})

    return httpx.MockTransport(handle)


CALLS: dict[str, Callable[[NodeClient], Awaitable[object]]] = {
    "status": lambda c: c.status(NODE),
    "prove": lambda c: c.prove(NODE, b"n" * 32),
    "lease": lambda c: c.lease(NODE, 1000),
    "heartbeat": lambda c: c.heartbeat(NODE, LEASE_ID),
    "release": lambda c: c.release(NODE, LEASE_ID),
}


def call(name: str, transport: httpx.AsyncBaseTransport, identity: NodeIdentity | None = None) -> object:
    async def go() -> object:
        async with NodeClient(identity, transport=transport, timeout=1.0) as client:
            return await CALLS[name](client)

    return asyncio.run(go())


def raising(make: Callable[[httpx.Request], Exception]) -> httpx.MockTransport:
    """A transport whose every request fails with make(request) (an httpx error, as the network's)."""

    def handle(request: httpx.Request) -> httpx.Response:
        raise make(request)

    return httpx.MockTransport(handle)
