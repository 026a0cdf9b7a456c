"""The coordinator's rate limits at the edge (issue 11): an ASGI middleware before every route, the
per-identity check SignedOnly calls once a signature verifies, and the cap on jobs per worker.

Order matters. `PerAddress` is the outermost layer: a request (or the worker link's WebSocket
upgrade) from an address over its bucket is answered 429 before its body is read, its signature
checked or anything written, so malformed and oversized floods are bounded as well-formed ones.
`PerIdentity` runs inside SignedOnly, after the signature verified and before the welcome grant:
a bucket is never keyed by an id the request merely claims, or anyone could drain another's.
Refusals are hearth's error body (`code: rate_limited`) with `Retry-After` in whole seconds.

The rules (buckets, keys, settings) are `ratelimit_rules`, pure; this module only reads the
client address and the clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.net.http_errors import hearth_error_response
from hearth.public_swarm.coordinator.links import Link, LiveLinks
from hearth.public_swarm.coordinator.ratelimit_rules import Buckets, Rate, RateLimited, address_key

log = logging.getLogger("hearth.coordinator.limits")

WS_HTTP_RESPONSE = "websocket.http.response"
"""The ASGI extension that lets a WebSocket upgrade be answered with an HTTP response (uvicorn has it)."""


class PerAddress:
    """Admits each HTTP request and WebSocket upgrade against its client address's bucket."""

    def __init__(self, app: ASGIApp, rate: Rate, max_keys: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.clock = app, clock
        self.buckets = Buckets(rate, max_keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else ""
        decision = self.buckets.admit(address_key(address), self.clock())
        if decision.admitted:
            await self.app(scope, receive, send)
            return
        refused = RateLimited(f"Too many requests from this address; retry after {decision.retry_after} s.",
                              retry_after=decision.retry_after)
        if scope["type"] == "websocket" and WS_HTTP_RESPONSE not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1013, "reason": "rate limited"})
            return
        await hearth_error_response(refused, scope["path"])(scope, receive, send)


class PerIdentity:
    """The bucket of each verified signer: `check(node_id)` raises RateLimited when it is empty."""

    def __init__(self, rate: Rate, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets = Buckets(rate, max_keys)

    def check(self, node_id: str) -> None:
        decision = self.buckets.admit(node_id, self.clock())
        if not decision.admitted:
            raise RateLimited(f"Too many requests signed by this identity; retry after {decision.retry_after} s.",
                              retry_after=decision.retry_after)


def cap_worker_jobs(links: LiveLinks, cap: int) -> None:
    """Offer no worker more than `cap` jobs at once, whatever max_jobs its Hello declared: runs in
    the links' `on_link` hook (set by the dispatcher; call this after `Dispatcher.start`), which a
    new link fires before the dispatcher can offer it anything."""
    inner = links.on_link

    def capped(node_id: str, link: Link) -> None:
        if link.session.max_jobs > cap:
            log.info("worker %s asked for %d jobs at once; offering at most %d", node_id, link.session.max_jobs, cap)
            link.session.max_jobs = cap
        if inner is not None:
            inner(node_id, link)

    links.on_link = capped
