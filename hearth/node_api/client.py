"""The typed client for the node control API: one method per call, one place for its errors.

Every request is signed with this machine's identity when it has one (hearth.pairing.signed):
nodes that admit paired peers only answer nothing else; household nodes ignore the signature.
Whatever goes wrong on the way becomes a HearthError: NodeUnreachable (refused, timed out,
connection broken), NodeAnswerInvalid (not JSON, missing or mistyped fields, too large, an
unexpected status without hearth's error body), or the error the node's body names by its code
(LeaseRefused, LeaseNotFound, Unsigned, NotPaired; NodeRefused for codes this build does not
know). Messages say what happened and what to do; the caller adds which node it asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from hearth.discovery.records import PeerRecord, RecordError
from hearth.errors import HearthError, InvalidRequest, NodeAnswerInvalid, NodeRefused, NodeUnreachable
from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.net.endpoint import Endpoint
from hearth.net.http_client import BoundedHttpClient
from hearth.node_api import wire
from hearth.node_api.errors import REFUSALS
from hearth.node_api.wire import Granted, HeldLease, NodeStatus, ProveAnswer
from hearth.pairing.signed import SignedAuth

DEFAULT_TIMEOUT = 5.0
MAX_ANSWER = 1024 * 1024
"""No control answer comes near this; a node that sends more is not one to trust."""
_LEASE_ID = re.compile(wire.LEASE_ID_PATTERN)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Status:
    record: PeerRecord
    """The node as the discovery parser accepts it, at the address that was asked."""
    detail: NodeStatus
    """Everything the status said (budget, leases; missing from nodes of other versions)."""


@dataclass(frozen=True)
class Proof:
    node_id: str
    public_key: bytes
    signature: bytes
    """Not yet checked: hearth.identity.verify_proof says whether the node is who it claims."""


def _parse(model: type[M], body: bytes, what: str) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise NodeAnswerInvalid(f"The node's answer to {what} is not JSON: is that port a hearth "
                                    "node's control API?") from exc
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        raise NodeAnswerInvalid(f"The node's answer to {what} is malformed at {where!r} ({first['msg']}): "
                                "update hearth so that both machines run the same version.") from exc


def _refusal(status: int, body: bytes, what: str) -> HearthError:
    """The error for an answer with an unexpected status: the node's own when its body names one."""
    if 200 <= status < 300:
        return NodeAnswerInvalid(f"The node answered {what} with HTTP {status}, not what hearth's control "
                                 "API answers: update hearth so that both machines run the same version.")
    try:
        error = wire.ErrorBody.model_validate_json(body).error
    except ValidationError:
        return NodeAnswerInvalid(f"The node answered {what} with HTTP {status} and no hearth error: is that "
                                 "port a hearth node's control API (and no proxy in between)?")
    cls = REFUSALS.get(error.code or "")
    if cls is not None:
        return cls(error.message)
    return NodeRefused(f"The node refused {what} (HTTP {status}, {error.code or 'no code'}): {error.message}",
                       status=status, remote_code=error.code)


def _transport(exc: httpx.RequestError, timeout: float) -> HearthError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return NodeUnreachable(f"The node did not answer within {timeout:g} s: that machine may be asleep, "
                               "busy or off the network.")
    if isinstance(exc, httpx.ConnectError):
        return NodeUnreachable(f"Nothing answered ({detail}): is `hearth node` running on that machine, and "
                               "are the address and port right?")
    if isinstance(exc, httpx.TransportError):
        return NodeUnreachable(f"The connection to the node broke ({detail}); try again, or check that "
                               "machine's `hearth node`.")
    return NodeAnswerInvalid(f"The node's answer could not be read ({detail}): is that port a hearth node's "
                             "control API?")


def _lease_id(lease_id: str) -> str:
    if not 8 <= len(lease_id) <= 64 or not _LEASE_ID.match(lease_id):
        raise InvalidRequest(f"{lease_id[:70]!r} is not a lease id.", param="lease_id")
    return lease_id


class NodeClient(BoundedHttpClient):
    """Talks to any number of nodes' agents over one connection pool; close it (or use `async
    with`) when done. `transport` replaces the network (httpx.MockTransport in tests)."""

    max_answer = MAX_ANSWER

    def __init__(self, identity: NodeIdentity | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(timeout=timeout, transport=transport,
                         auth=SignedAuth(identity) if identity is not None else None)

    def transport_error(self, exc: httpx.RequestError, timeout: float) -> HearthError:
        return _transport(exc, timeout)

    def too_large(self, size: int, limit: int) -> HearthError:
        return NodeAnswerInvalid(f"The node's answer runs past {limit} bytes, more than a control answer can "
                                 "be; is that port a hearth node's control API?")

    async def _call(self, method: str, node: Endpoint, path: str, expect: int, body: BaseModel | None = None,
                    timeout: float | httpx.Timeout | None = None) -> bytes:
        what = f"{method} {path}"
        content = body.model_dump_json().encode() if body is not None else None
        headers = {"content-type": "application/json"} if body is not None else None
        response, answer = await self.exchange(method, f"http://{node}{path}", content=content, headers=headers,
                                               timeout=timeout)
        if response.status_code != expect:
            raise _refusal(response.status_code, answer, what)
        return answer

    async def status(self, node: Endpoint, *, timeout: float | None = None) -> Status:
        """The node as it says it is; its record checked as strictly as an mDNS record."""
        detail = _parse(NodeStatus, await self._call("GET", node, wire.STATUS, 200, timeout=timeout),
                        f"GET {wire.STATUS}")
        try:
            record = detail.record(node.host)
        except RecordError as exc:
            raise NodeAnswerInvalid(f"The node's status is not a valid record: {exc.message}") from exc
        return Status(record, detail)

    async def prove(self, node: Endpoint, nonce: bytes, *, timeout: float | None = None) -> Proof:
        """The node's signature over `nonce` (16 to 64 random bytes) with the key it claims."""
        answer = _parse(ProveAnswer, await self._call("POST", node, wire.PROVE, 200,
                                                      wire.ProveRequest(nonce=b64.encode(nonce)), timeout),
                        f"POST {wire.PROVE}")
        try:
            return Proof(answer.node_id, b64.decode(answer.public_key), b64.decode(answer.signature))
        except ValueError as exc:  # binascii.Error is a ValueError
            raise NodeAnswerInvalid("The node's proof is not base64url: update hearth so that both machines "
                                    "run the same version.") from exc

    async def lease(self, node: Endpoint, size: int, *, timeout: float | httpx.Timeout | None = None) -> Granted:
        """A lease of `size` bytes: an RPC server on the node and where to reach it."""
        body = await self._call("POST", node, wire.LEASES, 201, wire.LeaseRequest(bytes=size), timeout)
        return _parse(Granted, body, f"POST {wire.LEASES}")

    async def heartbeat(self, node: Endpoint, lease_id: str, *, timeout: float | None = None) -> HeldLease:
        """Keep the lease alive (LeaseNotFound: it has ended, and the node may be leased again)."""
        path = wire.heartbeat_path(_lease_id(lease_id))
        return _parse(HeldLease, await self._call("POST", node, path, 200, timeout=timeout), f"POST {path}")

    async def release(self, node: Endpoint, lease_id: str, *, timeout: float | None = None) -> None:
        await self._call("DELETE", node, wire.lease_path(_lease_id(lease_id)), 204, timeout=timeout)

    async def drain(self, node: Endpoint, draining: bool = True, *, timeout: float | None = None) -> wire.ControlAnswer:
        """Stop the node taking new leases (False: take them again); its running leases run out.
        Only the node's own machine may (NodeRefused, code not_this_machine, otherwise)."""
        body = await self._call("POST", node, wire.DRAIN, 200, wire.DrainRequest(draining=draining), timeout)
        return _parse(wire.ControlAnswer, body, f"POST {wire.DRAIN}")

    async def stop(self, node: Endpoint, *, timeout: float | None = None) -> wire.ControlAnswer:
        """Shut the node's agent down (its leases end); only from the node's own machine."""
        body = await self._call("POST", node, wire.STOP, 200, timeout=timeout)
        return _parse(wire.ControlAnswer, body, f"POST {wire.STOP}")
