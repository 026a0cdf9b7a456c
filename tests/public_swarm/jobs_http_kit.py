"""Shared by the jobs API's in-process tests: the coordinator's app over a real database, its
Dispatcher not started (no pump: jobs stay queued) and LiveLinks whose table lists workers without
sockets (dispatch_kit.links_with, a stand-in for linked workers), reached through httpx's ASGI
transport from a chosen client address."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.allowance import Allowance
from hearth.public_swarm.coordinator.app import create_coordinator_app
from hearth.public_swarm.coordinator.dispatch import Dispatcher
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.jobs_client import JobsClient
from hearth.public_swarm.coordinator.stats import SwarmStats
from hearth.public_swarm.coordinator.workers import WorkerStore
from hearth.public_swarm.ledger.db import Ledger
from tests.public_swarm.dispatch_kit import MODEL, links_with
from tests.public_swarm.jobs_kit import node

BASE = "http://coordinator.test"


@dataclass
class Books:
    app: FastAPI
    ledger: Ledger
    queue: JobQueue
    allowance: Allowance
    dispatcher: Dispatcher
    stats: SwarmStats

    def anonymous(self, address: str = "192.0.2.10") -> httpx.AsyncClient:
        """An unsigned client at `address`."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(self.app, client=(address, 40000)), base_url=BASE)

    def signed(self, identity: NodeIdentity) -> JobsClient:
        return JobsClient(BASE, identity, transport=httpx.ASGITransport(self.app, client=("192.0.2.99", 40000)))


@contextmanager
def books(url: str, *, tokens_per_day: int = 20_000, workers: int = 2) -> Iterator[Books]:
    ledger = Ledger.open(url, welcome=10**7)
    queue = JobQueue.open(url)
    allowance = Allowance(ledger.engine, tokens_per_day=tokens_per_day)
    links = links_with(*((node(100 + i), (MODEL,)) for i in range(workers)))
    stats = SwarmStats()
    dispatcher = Dispatcher(ledger, queue, links, stats=stats, allowance=allowance)
    app = create_coordinator_app(ledger, WorkerStore(ledger.engine), node(1), links, dispatcher)
    try:
        yield Books(app, ledger, queue, allowance, dispatcher, stats)
    finally:
        queue.close()
        ledger.close()
