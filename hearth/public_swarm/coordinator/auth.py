"""The coordinator's gate: every request but the free tier's is signed, and the signer is the account.

hearth's signed-request scheme (`hearth.pairing.signed`: Ed25519 over method, path, time, nonce
and the body's hash) as the node agent uses it, but any identity is admitted, not only paired
ones: the public swarm is strangers. The signer's node id (a fingerprint of its key) is its
ledger account and its worker id, so nobody can act for an identity without its key. The check
runs before routing and before the body is parsed: an unsigned, forged or replayed request gets
401 and touches nothing. A verified signer's rate limit (`limit_identity`, ratelimit.PerIdentity)
is checked next, before anything is written for it: a bucket is keyed only by a proven id. Then a
new identity's first signed request gets the welcome grant.

Some paths also admit unsigned requests (`optional`, wire.signature_optional: the requester routes
and the async jobs API). There an unsigned request reaches the route with no signer (the route
then uses the client address and its free allowance), its body bounded as a signed one's; a
request that carries a signature is still checked, and a bad one is still a 401.

Nonces are remembered in the coordinator's database (`nonces.DbNonces`, given by the app) for two
signature windows, so a request captured at one coordinator process is refused at every other;
the check runs in a thread (it writes to the database), never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.errors import HearthError, RefusedByPeer, TooLarge
from hearth.identity import node_id_of
from hearth.net import b64
from hearth.net.asgi_body import read_body, replaying
from hearth.net.http_errors import hearth_error_response
from hearth.pairing.signed import Unsigned, Verifier

MAX_BODY = 256 * 1024
"""The largest signed request body: a registration of MAX_MODELS models is well under it."""


class NotOperator(RefusedByPeer):
    """Only the coordinator's operator (the identity in its HEARTH_HOME) may grant credits."""

    http_status = 403
    error_type = "permission_error"
    code = "not_operator"


def signer_or_none(request: Request) -> str | None:
    """The node id that signed this request, or None for an unsigned one (`optional` paths)."""
    signer = request.scope.get("state", {}).get("signer")
    return signer if isinstance(signer, str) else None


def any_identity(key: str) -> str:
    """Verifier lookup that admits every key: the node id it names is the caller."""
    return node_id_of(b64.decode(key))


def signer_of(request: Request) -> str:
    """The node id that signed this request (routes behind SignedOnly only)."""
    signer = request.scope.get("state", {}).get("signer")
    if not isinstance(signer, str):
        raise Unsigned("This request is not signed with a hearth identity.")
    return signer


class SignedOnly:
    """Admits requests signed by any identity, except to `unsigned` paths; puts the signer's node
    id in `scope["state"]["signer"]` and awaits `first_seen(node_id, client address)` before routing."""

    def __init__(self, app: ASGIApp, verifier: Verifier[str], unsigned: frozenset[str],
                 first_seen: Callable[[str, str], Awaitable[None]],
                 optional: Callable[[str], bool] = lambda path: False,
                 limit_identity: Callable[[str], None] = lambda node_id: None) -> None:
        self.app, self.verifier, self.unsigned, self.first_seen = app, verifier, unsigned, first_seen
        self.optional = optional
        """Paths where an unsigned request passes with no signer (a signed one is still checked)."""
        self.limit_identity = limit_identity
        """Raises (RateLimited) when a verified signer is over its rate."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.unsigned:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        signer: str | None = None
        try:
            signed = "x-hearth-signature" in headers
            if not signed and not self.optional(scope["path"]):
                raise Unsigned("The coordinator answers signed requests only (the free tier aside): use "
                               "hearth's client, which signs with this machine's identity.")
            body = await read_body(receive, MAX_BODY, TooLarge(f"The request body is over {MAX_BODY} bytes."))
            if body is None:
                return
            if signed:
                signer = await asyncio.to_thread(self.verifier.verify, scope["method"], scope["path"], headers, body)
                self.limit_identity(signer)
                client = scope.get("client")
                await self.first_seen(signer, str(client[0]) if client else "")
        except HearthError as exc:
            await hearth_error_response(exc, scope["path"])(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if signer is None:
            state.pop("signer", None)
        else:
            state["signer"] = signer
        await self.app(scope, replaying(body, receive), send)


def check_operator(signer: str, operator: str) -> None:
    if signer != operator:
        raise NotOperator(f"Only this coordinator's operator may grant credits; {signer} is not it.")

