"""Which requests `Escalating` sends to the swarm, without sockets or engines: the pool and the
requester are recording stand-ins here (the real ones are in test_public_swarm_e2e.py); what is
tested is the routing rule: only when the circle cannot serve, before any event, after consent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from hearth.engine.events import Done, Start, Token
from hearth.errors import EngineCrashed, HearthError, InvalidRequest, ModelNotFound
from hearth.escalation.consent import Consent, PublicNotConsented
from hearth.escalation.pool import Escalating
from hearth.models.store import ModelStore
from hearth.orchestrator.planner import DoesNotFit
from hearth.public_swarm.sse import PublicCost
from hearth.settings import Settings

URL = "http://127.0.0.1:11440"
DONE = Done("x", "stop", 3, 1, 1.0, 2.0, None)
COST = PublicCost(240, 60, "job", ("w",), "")


class Pool:
    """Stands in for EnginePool: fails with `error` before or after its first event."""

    def __init__(self, home: Path, error: HearthError | None = None, after_first: bool = False) -> None:
        self.store, self.error, self.after_first = ModelStore(home / "models"), error, after_first
        self.engine = self.placement = None
        self.runs = 0

    async def run(self, model: str, op: str, **fields: Any) -> AsyncGenerator[object, None]:
        self.runs += 1
        if self.error is not None and not self.after_first:
            raise self.error
        yield Start("x", 3)
        if self.error is not None:
            raise self.error
        yield Token("x", "circle", (1,))
        yield DONE

    async def load(self, model: str, on_progress: Any = None) -> object:
        if self.error is not None:
            raise self.error
        return "engine"

    def status(self) -> dict[str, Any]:
        return {"model": None}

    async def close(self) -> None:
        pass


class Requester:
    asked: list[tuple[str, str]] = []

    async def __aenter__(self) -> Requester:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def run(self, model: str, op: str, **fields: Any) -> AsyncGenerator[object, None]:
        Requester.asked.append((model, op))
        yield Start("p", 0)
        yield Token("p", "swarm", ())
        yield COST
        yield DONE


def escalating(tmp_path: Path, pool: Pool, consent: bool = True) -> tuple[Escalating, list[str]]:
    Requester.asked = []
    notes: list[str] = []
    settings = Settings(home=tmp_path, coordinator=URL)
    return Escalating(pool, settings, Consent(tmp_path, URL, given=consent),  # type: ignore[arg-type]
                      requester=Requester, note=notes.append), notes  # type: ignore[arg-type]


def texts(e: Escalating, op: str = "chat") -> list[object]:
    async def go() -> list[object]:
        return [ev async for ev in e.run("m", op, messages=[])]

    return asyncio.run(go())


def test_a_circle_that_serves_never_reaches_the_swarm(tmp_path: Path) -> None:
    e, notes = escalating(tmp_path, Pool(tmp_path))
    assert Token("x", "circle", (1,)) in texts(e) and Requester.asked == [] and notes == []


@pytest.mark.parametrize("error", [DoesNotFit("too big", needed=2, available=1), ModelNotFound("not stored")])
def test_what_the_circle_cannot_serve_goes_to_the_swarm_with_its_cost(tmp_path: Path, error: HearthError) -> None:
    pool = Pool(tmp_path, error)
    e, notes = escalating(tmp_path, pool)
    events = texts(e)
    assert Requester.asked == [("m", "chat")] and events[-2:] == [COST, DONE]
    assert e.last_cost == COST and e.status()["public"]["requests"] == 1
    assert notes[0] == f"The circle cannot serve m: {error.message}"
    texts(e)  # within REMEMBER_S the circle is not surveyed again, and the reason not said again
    assert pool.runs == 1 and len(Requester.asked) == 2 and sum("cannot serve" in n for n in notes) == 1


@pytest.mark.parametrize("error, after_first", [(InvalidRequest("bad"), False), (EngineCrashed("died"), True),
                                               (DoesNotFit("x", needed=2, available=1), True)])
def test_other_errors_and_errors_mid_reply_stay_the_circles(tmp_path: Path, error: HearthError,
                                                            after_first: bool) -> None:
    e, _ = escalating(tmp_path, Pool(tmp_path, error, after_first))
    with pytest.raises(type(error)):
        texts(e)
    assert Requester.asked == []


def test_embeddings_never_leave_the_circle(tmp_path: Path) -> None:
    e, _ = escalating(tmp_path, Pool(tmp_path, ModelNotFound("not stored")))
    with pytest.raises(ModelNotFound):
        texts(e, "embed")
    assert Requester.asked == []


def test_without_consent_nothing_is_sent(tmp_path: Path) -> None:
    e, _ = escalating(tmp_path, Pool(tmp_path, DoesNotFit("x", needed=2, available=1)), consent=False)
    with pytest.raises(PublicNotConsented):
        texts(e)
    assert Requester.asked == []
    assert asyncio.run(e.load("m")) is None  # load says "the swarm", and asks no one where no one can answer
