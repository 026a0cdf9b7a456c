"""Waiting on the engine for an HTTP request: the first event, the whole reply, or nothing
when the client leaves first. Shared by the OpenAI and Ollama routes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request

from hearth.engine.events import Done, Token
from hearth.errors import EngineFailed
from hearth.escalation.pool import Event
from hearth.public_swarm.sse import PublicCost

if TYPE_CHECKING:
    from hearth.escalation.pool import Engines
    from hearth.models.store import Manifest

T = TypeVar("T")
log = logging.getLogger("hearth.http")
Events = AsyncGenerator[Event, None]
COST_HEADER = "X-Hearth-Cost"
"""Micro-credits a reply cost on the public swarm (0 when the circle served it)."""


def client_of(request: Request) -> str:
    """Who asks, for the engine's fair share of slots: the peer's address, and a hash of the API
    key it sent if any (never the key itself), so that people on different machines, or with
    different keys, are different clients."""
    host = request.client.host if request.client else "unknown"
    given = request.headers.get("authorization", "")
    token = given[7:].strip() if given[:7].lower() == "bearer " else ""
    if not token:
        return host
    return f"{hashlib.sha256(token.encode()).hexdigest()[:16]}@{host}"


async def start(events: Events) -> tuple[Event, Events]:
    """Wait for the first event, so that errors before generation become HTTP statuses."""
    first = await anext(events)
    return first, events


class ClientGone(Exception):
    """The client disconnected before its reply was ready; its work was cancelled."""


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run work; cancel it (and so the generation, or its place in the queue) if the client
    goes away first."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.2)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()


async def collect(events: Events, tokens: list[Token] | None = None) -> tuple[str, Done, PublicCost | None]:
    """A whole reply: its text, its Done event, and its cost when the public swarm served it
    (and its Token events in `tokens`, if given: their logprobs)."""
    parts: list[str] = []
    cost: PublicCost | None = None
    async with contextlib.aclosing(events):
        async for ev in events:
            if isinstance(ev, Token):
                parts.append(ev.text)
                if tokens is not None:
                    tokens.append(ev)
            elif isinstance(ev, PublicCost):
                cost = ev
            elif isinstance(ev, Done):
                return "".join(parts), ev, cost
    raise EngineFailed("The engine ended the request without finishing it.")


def cost_headers(cost: PublicCost | None) -> dict[str, str]:
    return {COST_HEADER: str(cost.micro_credits if cost else 0)}


def public_part(cost: PublicCost | None) -> dict[str, Any]:
    """Who served a reply, for the response's `hearth` object."""
    if cost is None:
        return {"served_by": "circle"}
    return {"served_by": "public", "job_id": cost.job_id, "workers": list(cost.workers),
            "receipt": cost.receipt, "price": cost.price}


def known_models(pool: Engines) -> list[tuple[str, Manifest | None]]:
    """Stored models and the embedded ones (imported on first use): what /v1/models and
    /api/tags both list."""
    from hearth.models.catalogue import CATALOGUE

    stored = {m.name: m for m in pool.store.all()}
    names = sorted(set(stored) | {a for a, e in CATALOGUE.items() if e.embedded})
    return [(n, stored.get(n)) for n in names]


@contextlib.asynccontextmanager
async def noting_departure(what: str) -> AsyncIterator[None]:
    """One log line, not a traceback, when the client leaves during `what` (the response's body
    is then closed or cancelled, which cancels the generation)."""
    try:
        yield
    except (asyncio.CancelledError, GeneratorExit):
        log.info("a client left before its reply (during %s); the request was cancelled", what)
        raise
