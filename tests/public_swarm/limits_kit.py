"""Shared by the limits' tests and scripts: a real coordinator (serve.run_coordinator: uvicorn,
the links, the dispatcher) on 127.0.0.1 with chosen limits, and httpx clients from chosen loopback
addresses (127.0.0.x all reach 127.0.0.1 on Linux, each a client address of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from hearth.identity import NodeIdentity
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator import serve
from hearth.public_swarm.coordinator.allowance import Allowance
from hearth.public_swarm.coordinator.presence import Presence
from hearth.public_swarm.coordinator.ratelimit_rules import Limits
from hearth.public_swarm.ledger.db import Ledger
from hearth.settings import Settings
from tests.conftest import free_port
from tests.public_swarm.dispatch_kit import MODEL


@dataclass
class Live:
    url: str
    ledger: Ledger


@contextlib.asynccontextmanager
async def limited(tmp: Path, limits: Limits, *, elsewhere: bool = True) -> AsyncIterator[Live]:
    """A coordinator with `limits` over SQLite in `tmp`. With `elsewhere`, MODEL is published as
    served by a worker linked to another coordinator process (a real multi-process state): jobs
    for it open and stay queued, as no worker here claims them."""
    home = tmp / "coord"
    home.mkdir(parents=True, exist_ok=True)
    ledger, registry = serve.open_books(f"sqlite:///{home / 'coordinator.db'}", 10**7, print)
    if elsewhere:
        later = time.time() + 3600  # seen "in an hour": live for the whole test
        Presence(ledger.engine, clock=lambda: later).publish([("elsewhere-worker", (MODEL,), 1)])
    port, ready = free_port(), asyncio.Event()
    task = asyncio.create_task(serve.run_coordinator(
        Settings(home=home), "127.0.0.1", port, ledger, registry, NodeIdentity.load_or_create(home), ready,
        Allowance(ledger.engine, tokens_per_day=limits.free_tokens_per_day), limits=limits))
    await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield Live(f"http://127.0.0.1:{port}", ledger)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ledger.close()


def client(url: str, address: str = "127.0.0.1", identity: NodeIdentity | None = None,
           **kwargs: object) -> httpx.AsyncClient:
    """An httpx client whose connections come from `address`, signing as `identity` when given."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=url, transport=transport, auth=SignedAuth(identity) if identity else None,
                             timeout=30, **kwargs)  # type: ignore[arg-type]


def job_body(key: str, max_tokens: int = 4) -> dict[str, object]:
    return {"model": MODEL.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens,
            "key": key}


UNLIMITED = ("--address-rate", "1000000", "--address-burst", "1000000", "--identity-rate", "1000000",
             "--identity-burst", "1000000", "--jobs-per-requester", "10000")
"""`hearth coordinator` options for tests and benchmarks that send hundreds of requests at once
from 127.0.0.1 (from many machines in life): the rate limits and jobs at once never bind."""
