"""Drain and stop a node agent (`hearth dash`'s d and s): only its own machine may ask.

    POST /v1/node/drain  {"draining": true}   no new leases; the ones running run out (false: take them again)
    POST /v1/node/stop                        the agent shuts down as on SIGTERM, its RPC servers with it

A caller is admitted from loopback, or with a request signed by this node's own identity key
(hearth.pairing.signed: a dashboard on this machine reaching the agent on its WireGuard address).
Paired peers may lease from a node; they may not drain or stop it. These two paths are answered
here, before PairedOnly (which would refuse this node's own key, not being paired with itself).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.errors import HearthError, InvalidRequest, RefusedByPeer
from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.net.asgi_body import read_body
from hearth.net.http_errors import hearth_error_response
from hearth.node_api import wire
from hearth.pairing.signed import Verifier
from hearth.rpc_pool.leases import LeaseManager
from hearth.rpc_pool.policy import Held, LeasePolicy

log = logging.getLogger("hearth.node")
MAX_BODY = 1024
STOP_AFTER_S = 0.1
"""The stop's answer leaves before the agent starts shutting down."""
Publish = Callable[..., object]


class NotThisMachine(RefusedByPeer):
    """Only the node's own machine (loopback, or its own identity's signature) drains or stops it."""

    http_status = 403
    error_type = "permission_error"
    code = "not_this_machine"


@dataclass(frozen=True)
class Draining(LeasePolicy):
    """The node's policy while it drains: full to every planner, and a refusal naming it."""

    node: str = ""

    def full(self, leases: Iterable[Held]) -> bool:
        return True

    def refusal(self, leases: Iterable[Held], holder: str, charged: int) -> str | None:
        running = len(list(leases))
        return (f"Node {self.node} is draining: it takes no new leases while its {running} running one(s) run "
                "out; ask another node (its owner resumes it with `hearth dash`, or restarts `hearth node`).")


def draining(manager: LeaseManager) -> bool:
    """Whether the node drains (for its status)."""
    return isinstance(manager.policy, Draining)


def set_draining(manager: LeaseManager, name: str, on: bool) -> bool:
    """Drain (or resume) the node; whether that changed anything."""
    if on == draining(manager):
        return False
    fields = asdict(manager.policy)
    fields.pop("node", None)
    manager.policy = Draining(**fields, node=name) if on else LeasePolicy(**fields)
    if manager.on_change is not None:
        manager.on_change()  # the advertised record says full: planners pass the node by
    return True


def raise_sigterm() -> None:
    """Stop as `kill` would: uvicorn shuts down, the leases end, `hearth node` unwinds."""
    signal.raise_signal(signal.SIGTERM)


class NodeControl:
    """Answers DRAIN and STOP (see the module's docstring); everything else goes on to the agent."""

    def __init__(self, app: ASGIApp, identity: NodeIdentity, name: str, manager: LeaseManager,
                 publish: Publish | None = None, stop: Callable[[], None] = raise_sigterm) -> None:
        self.app, self.identity, self.name, self.manager = app, identity, name, manager
        self.publish, self.stop = publish, stop
        own = b64.encode(identity.public_key)
        self.verifier: Verifier[NodeIdentity] = Verifier(lambda key: identity if key == own else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in (wire.DRAIN, wire.STOP):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, MAX_BODY, InvalidRequest("A control request's body is at most "
                                                                     f"{MAX_BODY} bytes."))
            if body is None:
                return
            self._admit(scope, body)  # first: a stranger learns nothing else, not even the method
            if scope["method"] != "POST":
                raise InvalidRequest(f"{scope['path']} takes POST.")
            answer = self._drain(body) if scope["path"] == wire.DRAIN else self._stopping()
        except HearthError as exc:
            await hearth_error_response(exc, scope["path"])(scope, receive, send)
            return
        await JSONResponse(answer.model_dump())(scope, receive, send)
        if answer.stopping:
            asyncio.get_running_loop().call_later(STOP_AFTER_S, self.stop)

    def _admit(self, scope: Scope, body: bytes) -> None:
        address = scope["client"][0] if scope.get("client") else ""
        try:
            if ipaddress.ip_address(address).is_loopback:
                return
        except ValueError:
            pass
        headers = Headers(scope=scope)
        if "x-hearth-signature" in headers:
            try:
                self.verifier.verify(scope["method"], scope["path"], headers, body)
                return
            except HearthError as exc:
                raise NotThisMachine(f"Only node {self.name}'s own machine may drain or stop it: {exc.message}") \
                    from exc
        raise NotThisMachine(f"Only node {self.name}'s own machine may drain or stop it: ask from that machine "
                             "(`hearth dash` there), or sign with its identity.")

    def _answer(self, stopping: bool = False) -> wire.ControlAnswer:
        return wire.ControlAnswer(node_id=self.identity.node_id, name=self.name, draining=draining(self.manager),
                                  stopping=stopping, leases=len(self.manager.leases))

    def _drain(self, body: bytes) -> wire.ControlAnswer:
        try:
            wanted = wire.DrainRequest.model_validate(json.loads(body) if body.strip() else {})
        except (ValueError, ValidationError) as exc:  # json's errors are ValueErrors
            raise InvalidRequest('The body is {"draining": true} or {"draining": false} (or empty: drain).',
                                 param="draining") from exc
        if set_draining(self.manager, self.name, wanted.draining):
            verb = "draining" if wanted.draining else "taking leases again"
            log.warning("node %s is %s (%d lease(s) running)", self.name, verb, len(self.manager.leases))
            self._publish("node_draining" if wanted.draining else "notice", f"node {self.name} is {verb}")
        return self._answer()

    def _stopping(self) -> wire.ControlAnswer:
        log.warning("node %s asked to stop; ending %d lease(s)", self.name, len(self.manager.leases))
        self._publish("node_left", f"node {self.name} is stopping")
        return self._answer(stopping=True)

    def _publish(self, kind: str, message: str) -> None:
        if self.publish is None:
            return
        try:
            self.publish(kind, message, node=self.name, leases=len(self.manager.leases))
        except Exception:  # the feed must never break a control request
            log.exception("publishing %s failed", kind)


def mount(app: FastAPI, identity: NodeIdentity, name: str, manager: LeaseManager,
          publish: Publish | None = None, stop: Callable[[], None] = raise_sigterm) -> None:
    """Answer drain and stop on `app`, outside any middleware added before (PairedOnly)."""
    app.add_middleware(NodeControl, identity=identity, name=name, manager=manager, publish=publish, stop=stop)
