"""A worker's own standing (`GET /v1/standing`, signed) and its operator's page: spot-checks of
this machine passed and failed, and credits in escrow, instead of "not reported" (issue 11).

The coordinator is the real app with a real Trust over a real database (SQLite and PostgreSQL),
reached through httpx's ASGI transport from a loopback address; the check is opened and decided
through Trust as the verifier does. The page is rendered from the same Earnings the worker runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hearth.errors import HearthError
from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.app import create_coordinator_app
from hearth.public_swarm.coordinator.client import CoordinatorClient
from hearth.public_swarm.coordinator.dispatch import Dispatcher
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.stats import SwarmStats
from hearth.public_swarm.coordinator.trust import Trust
from hearth.public_swarm.coordinator.wire import StandingView
from hearth.public_swarm.coordinator.workers import WorkerStore
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.worker_page import Earnings, Served, render, snapshot
from tests.public_swarm.dispatch_kit import MODEL, links_with
from tests.public_swarm.jobs_kit import node

BASE = "http://coordinator.test"


@contextmanager
def coordinator(url: str, *, checks: bool) -> Iterator[tuple[FastAPI, Trust]]:
    ledger = Ledger.open(url)
    queue = JobQueue.open(url)
    trust = Trust(ledger.engine, ledger)
    dispatcher = Dispatcher(ledger, queue, links_with((node(100), (MODEL,))), stats=SwarmStats(),
                            trust=trust if checks else None)
    try:
        yield create_coordinator_app(ledger, WorkerStore(ledger.engine), node(1), dispatcher.links, dispatcher), trust
    finally:
        queue.close()
        ledger.close()


def client(app: FastAPI, me: NodeIdentity) -> CoordinatorClient:
    return CoordinatorClient(BASE, me, transport=httpx.ASGITransport(app, client=("127.0.0.1", 40000)))


async def page_of(app: FastAPI, me: NodeIdentity) -> tuple[dict[str, Any], str]:
    async with client(app, me) as c:
        earnings = Earnings(c.credits, standing=c.standing)
        view = snapshot(Served(), await earnings.latest(), me.node_id)
    return view, render(view)


def test_a_worker_sees_its_checks_and_escrow(ledger_url: str, tmp_path: Path) -> None:
    me = NodeIdentity.load_or_create(tmp_path / "w")
    with coordinator(ledger_url, checks=True) as (app, trust):
        async def unknown() -> None:
            async with client(app, me) as c:
                with pytest.raises(HearthError):
                    await c.standing()  # never linked here: 404, the page says "not reported"
            view, html = await page_of(app, me)
            assert view["checks"]["passed"] is None and "not reported by the coordinator" in html

        asyncio.run(unknown())
        trust.seen(me.node_id, "127.0.0.1")
        trust.open_check("check0001", "job000000001", me.node_id)
        trust.decide("check0001", node(9), True, "")
        trust.open_check("check0002", "job000000002", me.node_id)
        trust.decide("check0002", node(9), False, "rank")

        async def known() -> tuple[StandingView, dict[str, Any], str]:
            async with client(app, me) as c:
                told = await c.standing()
            return (told, *await page_of(app, me))

        told, view, html = asyncio.run(known())
    assert told.spot_checks and (told.verified, told.failed) == (1, 1) and told.state in ("new", "quarantined")
    assert view["checks"]["passed"] == 1 and view["checks"]["failed"] == 1
    assert "1 passed, 1 failed" in html and 'id="credits-in-escrow"' in html and "not reported" not in html


def test_a_coordinator_without_spot_checks_says_so(ledger_url: str, tmp_path: Path) -> None:
    me = NodeIdentity.load_or_create(tmp_path / "w")
    with coordinator(ledger_url, checks=False) as (app, _):
        view, html = asyncio.run(page_of(app, me))
    assert view["checks"]["reported"] == "off" and view["checks"]["passed"] is None
    assert "runs without spot-checks" in html and "escrow" not in html


def test_an_unsigned_standing_request_is_refused(ledger_url: str) -> None:
    with coordinator(ledger_url, checks=True) as (app, _):
        async def go() -> int:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as c:
                return (await c.get("/v1/standing")).status_code

        assert asyncio.run(go()) == 401
