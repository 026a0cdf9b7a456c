"""What the dashboard records of a request the circle cannot serve, through the real EnginePool.run
and Escalating.run (no socket): request_escalated, then the public job's end, never request_failed
first. The circle's refusal is the pool's own `_engine_for` raising (planning needs real nodes:
test_public_swarm_e2e.py runs it for real); the swarm is test_routing.py's recording stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from hearth.engine.events import Start
from hearth.escalation.consent import Consent
from hearth.escalation.pool import Escalating
from hearth.node_api.feed import Feed
from hearth.node_api.status import RequestStat
from hearth.orchestrator.engines import EnginePool
from hearth.orchestrator.planner import DoesNotFit
from hearth.orchestrator.stats import RequestStats, handing_over
from hearth.public_swarm.coordinator.openai_wire import JobNotServed
from hearth.settings import Settings
from tests.escalation.test_routing import URL, Requester


class Failing(Requester):
    async def run(self, model: str, op: str, **fields: Any) -> AsyncGenerator[object, None]:
        yield Start("p", 0)
        raise JobNotServed("every worker failed it")


def setup(tmp_path: Path, requester: type[Requester] = Requester) -> tuple[Escalating, Feed, EnginePool]:
    settings = Settings(home=tmp_path, coordinator=URL)
    feed = Feed()
    pool = EnginePool(settings, feed=feed)

    async def cannot(model: str, on_progress: object = None) -> None:
        raise DoesNotFit("too big for the circle", needed=2, available=1)

    pool._engine_for = cannot  # type: ignore[method-assign,assignment]
    return Escalating(pool, settings, Consent(tmp_path, URL, given=True), requester=requester), feed, pool  # type: ignore[arg-type]


def run(e: Escalating, op: str = "chat") -> list[object]:
    async def go() -> list[object]:
        return [ev async for ev in e.run("m", op, messages=[], input=["x"])]

    return asyncio.run(go())


def test_an_escalated_request_ends_done_served_by_public(tmp_path: Path) -> None:
    e, feed, pool = setup(tmp_path)
    run(e)
    run(e)  # the second goes straight to the swarm (the circle failed moments ago)
    one = ["request_started", "request_escalated", "job_settled", "request_done"]
    assert [ev.kind for ev in feed.since(0)] == one + one
    escalated = [ev for ev in feed.since(0) if ev.kind == "request_escalated"]
    assert [ev.data["reason"] for ev in escalated] == ["does_not_fit"] * 2
    stats, _ = pool.stats.view(0)
    assert [(s.state, s.served_by, s.cost_credits) for s in stats] == [("done", "public", 240)] * 2
    assert pool.stats.in_flight == set()


def test_a_public_job_that_fails_fails_the_request_once(tmp_path: Path) -> None:
    e, feed, pool = setup(tmp_path, Failing)
    with pytest.raises(JobNotServed):
        run(e)
    assert [ev.kind for ev in feed.since(0)] == ["request_started", "request_escalated", "request_failed"]
    [stat] = pool.stats.view(0)[0]
    assert (stat.state, stat.served_by) == ("failed", "public") and pool.stats.in_flight == set()


def test_what_the_swarm_cannot_take_fails_as_before(tmp_path: Path) -> None:
    e, feed, pool = setup(tmp_path)
    with pytest.raises(DoesNotFit):
        run(e, "embed")
    assert [ev.kind for ev in feed.since(0)] == ["request_started", "request_failed"]
    assert pool.stats.in_flight == set()


def test_outside_a_handover_or_with_another_code_a_failure_is_a_failure() -> None:
    stats = RequestStats(Feed())
    plain = stats.start("m", "chat")
    plain.failed("does_not_fit")
    with handing_over(frozenset({"does_not_fit"})) as handover:
        other = stats.start("m", "chat")
        other.failed("engine_crashed")
        taken = stats.start("m", "chat")
        taken.failed("does_not_fit")
        taken.cancelled()  # the pool lets go: still open
        second = stats.start("m", "chat")
        second.failed("does_not_fit")  # one request per handover
    states = [s.state for s in stats.recent]
    assert states == ["failed", "failed", "queued", "failed"] and handover.tracker is taken
    taken.escalated("does_not_fit")
    assert isinstance(taken.stat, RequestStat) and taken.stat.served_by == "public" and taken in stats.in_flight
    taken.cancelled()  # the reader left
    assert taken.stat.state == "cancelled" and stats.in_flight == set()


def test_no_handover_leaks_out_of_its_block() -> None:
    stats = RequestStats(Feed())
    with handing_over(frozenset({"does_not_fit"})):
        pass
    t = stats.start("m", "chat")
    t.failed("does_not_fit")
    assert t.stat.state == "failed"
