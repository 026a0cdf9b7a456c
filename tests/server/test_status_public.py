"""The status's public radius: a real `hearth serve --radius public` (no request sent: nothing is
asked of the coordinator) shows it enabled with its coordinator and price ceiling; and what the
swarm served adds up in `spent`, through the real EnginePool and StatusView, the swarm being the
recording stand-in of tests/escalation/test_routing.py (the real one: test_public_swarm_e2e.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.escalation.consent import Consent
from hearth.escalation.pool import Escalating
from hearth.node_api.feed import Feed
from hearth.node_api.status import STATUS_PATH, ServeStatus
from hearth.orchestrator.engines import EnginePool
from hearth.orchestrator.planner import DoesNotFit
from hearth.server.status_routes import StatusView, public_coordinator
from hearth.settings import Settings
from tests.conftest import free_port, start_server, stop_server
from tests.escalation.test_routing import Requester

pytestmark = pytest.mark.slow


def test_serve_radius_public_shows_its_coordinator_and_ceiling(tmp_path: Path) -> None:
    coordinator = f"http://127.0.0.1:{free_port()}"
    srv = start_server(tmp_path, "--radius", "public", "--yes", "--max-price", "120",
                       HEARTH_COORDINATOR=coordinator)
    try:
        body = httpx.get(srv.url + STATUS_PATH, timeout=10).json()
    finally:
        stop_server(srv)
    status = ServeStatus.model_validate(body)
    assert status.radius == "public" and status.public.enabled and status.public.coordinator == coordinator
    assert status.public.max_price == 120 and status.public.spent == 0 and status.public.recent == []
    assert body["public"]["requests"] == 0 and "consented" in body["public"]  # the keys it always had


def test_what_the_swarm_served_is_spent_in_the_status(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, coordinator="http://127.0.0.1:11440", max_price=90)
    feed = Feed()
    pool = EnginePool(settings, feed=feed)

    async def does_not_fit(model: str, op: str, **fields: Any) -> AsyncGenerator[object, None]:
        raise DoesNotFit("too big for the circle", needed=2, available=1)
        yield  # an async generator, as the pool's run is

    pool.run = does_not_fit  # type: ignore[method-assign,assignment]
    escalating = Escalating(pool, settings, Consent(tmp_path, "http://127.0.0.1:11440", given=True),
                            requester=Requester)  # type: ignore[arg-type]

    async def go() -> dict[str, Any]:
        for _ in range(2):
            [e async for e in escalating.run("m", "chat", messages=[])]
        return await StatusView(settings, escalating).answer()

    body = asyncio.run(go())
    status = ServeStatus.model_validate(body)
    assert status.public.spent == 480 and [j.cost_credits for j in status.public.recent] == [240, 240]
    assert status.public.recent[0].tokens == 4 and status.public.max_price == 90
    assert body["public"]["requests"] == 2 and body["public"]["last_cost_credits"] == 240
    one = ["request_started", "request_escalated", "job_settled", "request_done"]
    assert [e.kind for e in feed.since(0)] == one + one  # escalated, never request_failed
    assert [(r.state, r.served_by, r.cost_credits) for r in status.requests] == [("done", "public", 240)] * 2


@pytest.mark.parametrize("url, shown", [("http://alice:pw@198.51.100.4:11440/x?token=s", "http://198.51.100.4:11440"),
                                        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
                                        (None, None)])
def test_the_coordinator_is_shown_without_credentials(url: str | None, shown: str | None) -> None:
    assert public_coordinator(url) == shown
