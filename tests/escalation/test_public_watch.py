"""PublicWatch, the status's public figures: the pure parsers (hypothesis), when it reads (at most
every EVERY_S, only while the status is read, never waited on) through httpx.MockTransport (no
socket), and what junk on a real socket does (a tiny local HTTP server): ignored, never raised."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.escalation.public_watch import (
    EVERY_S,
    Figures,
    FiguresUnreadable,
    PublicWatch,
    problem_of,
    served_counts,
    swarm_counts,
)
from hearth.identity import NodeIdentity
from hearth.node_api.status import PublicView
from hearth.pairing.signed import Unsigned
from hearth.public_swarm.coordinator.client import CoordinatorAnswerInvalid, CoordinatorRefused, CoordinatorUnreachable
from hearth.public_swarm.coordinator.health import Minute, ModelRow, Swarm, WorkerRow
from hearth.public_swarm.worker_page import Served, snapshot
from tests.escalation.junk_http import ANSWERS, junk_server

COORD = "http://127.0.0.1:11440"
CREDITS = {"account": "acct", "balance": 9_500_000, "held": 250_000, "holds": [], "entries": []}
SWARM = Swarm(at=1.0, live_workers=3, workers=[WorkerRow(node_id="abc", models=["m"], linked_at=1, last_seen=2)],
              models=[ModelRow(name="m", digest="d" * 64, workers=3, price=100, n_ctx=2048)],
              tokens_per_s_1m=1.5, tokens_per_s_5m=1.0, series=[Minute(minute=60, tokens=5)],
              jobs={"queued": 2, "running": 1, "done": 40})


# -- pure ----------------------------------------------------------------------------------------
def test_the_coordinators_and_the_pages_real_shapes_parse() -> None:
    assert swarm_counts(SWARM.model_dump_json().encode()) == (3, 2)
    served = Served(finished=4, accepted=5, tokens=99)
    page = snapshot(served, {"balance": 11, "earned_recent": 700, "error": None, "standing": None}, "node")
    assert served_counts(json.dumps(page).encode()) == (4, 700)
    unasked = snapshot(Served(), {"balance": None, "earned_recent": None, "error": "not asked", "standing": None}, "n")
    assert served_counts(json.dumps(unasked).encode()) == (0, 0)
    assert swarm_counts(b'{"live_workers": 0, "jobs": {}}') == (0, 0)


@pytest.mark.parametrize("body", [body for body, *_ in ANSWERS.values()] + [
    b"", b"null", b"[]", b'{"live_workers": 1.5, "jobs": {}}', b'{"live_workers": true, "jobs": {}}',
    b'{"live_workers": 1, "jobs": {"queued": "2"}}', b'{"live_workers": 10000000000000000, "jobs": {}}',
    b'{"jobs": {"finished": true}, "credits": {}}', b'{"jobs": {"finished": 1}, "credits": {"earned_recent": "9"}}'])
def test_junk_is_refused_by_both_parsers(body: bytes) -> None:
    for parse in (swarm_counts, served_counts):
        with pytest.raises(FiguresUnreadable):
            parse(body)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["live_workers", "jobs", "queued", "finished", "credits", "earned_recent", "x"]),
        inner, max_size=4), max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_any_answer_is_counts_or_figures_unreadable(body: bytes) -> None:
    for parse in (swarm_counts, served_counts):
        try:
            a, b = parse(body)
        except FiguresUnreadable:
            continue
        assert type(a) is int and type(b) is int and a >= 0 and b >= 0


def test_problems_are_short_and_name_no_url() -> None:
    for exc in (TimeoutError(), CoordinatorUnreachable(f"Could not reach {COORD}"),
                CoordinatorAnswerInvalid(f"{COORD} said junk"), FiguresUnreadable("junk")):
        said = problem_of(exc)
        assert len(said) <= 120 and "127.0.0.1" not in said and "http" not in said
    odd = CoordinatorRefused("no", status=400, remote_code="<b>[red]x</red>" + "y" * 500)
    assert problem_of(odd) == f"the coordinator refused (bredxred{'y' * 25})"  # its first 40 characters, cleaned
    assert problem_of(Unsigned("sign it")) == "the coordinator refused (unsigned_request)"


def test_figures_fill_every_field_they_have_of_the_view() -> None:
    view = PublicView(spent=5)
    Figures(connected=True, balance=3, held=1, swarm_workers=2, swarm_queued=0, checked_at=9.0,
            contributing=True, jobs_served=4, earned=7).fill(view)
    assert (view.connected, view.balance, view.held, view.swarm_workers, view.contributing, view.earned,
            view.spent) == (True, 3, 1, 2, True, 7, 5)


# -- when it reads (no socket) ---------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def recording(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.MockTransport, list[str]]:
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.port}{request.url.path}")
        return answer(request)

    return httpx.MockTransport(handle), asked


def coordinator_and_page(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/credits":
        assert "x-hearth-key" in request.headers  # signed as the server's identity
        return httpx.Response(200, json=CREDITS)
    if request.url.path == "/v1/swarm":
        assert "x-hearth-key" not in request.headers  # public counts: unsigned
        return httpx.Response(200, content=SWARM.model_dump_json().encode())
    served = snapshot(Served(finished=6), {"balance": 1, "earned_recent": 1234, "error": None, "standing": None}, "n")
    return httpx.Response(200, json=served)


async def settle(watch: PublicWatch) -> None:
    while watch._task is not None and not watch._task.done():
        await asyncio.sleep(0.01)


def test_it_reads_in_the_background_at_most_every_ten_seconds(tmp_path: Path) -> None:
    transport, asked = recording(coordinator_and_page)
    clock = Clock()
    watch = PublicWatch(NodeIdentity.load_or_create(tmp_path), 11441, clock=clock, wall=lambda: 5.0,
                        transport=transport)

    async def main() -> list[Figures]:
        seen = [watch.figures(COORD)]  # nothing known yet: answered at once, a reading started
        await settle(watch)
        for _ in range(30):  # a dashboard polling: no further reading within EVERY_S
            seen.append(watch.figures(COORD))
            await asyncio.sleep(0)
        await settle(watch)
        clock.t += EVERY_S
        watch.figures(COORD)
        await settle(watch)
        return seen

    seen = asyncio.run(main())
    assert seen[0] == Figures()
    assert seen[-1] == Figures(connected=True, balance=9_500_000, held=250_000, swarm_workers=3, swarm_queued=2,
                               checked_at=5.0, contributing=True, jobs_served=6, earned=1234)
    assert sorted(asked) == sorted(["11441/served.json", "11440/v1/credits", "11440/v1/swarm"] * 2)


def test_not_public_reads_only_the_page_and_a_coordinator_down_keeps_the_last_figures(tmp_path: Path) -> None:
    down = {"now": False}

    def answer(request: httpx.Request) -> httpx.Response:
        if down["now"] and request.url.port == 11440:
            raise httpx.ConnectError("refused")
        if request.url.port == 11441:
            raise httpx.ConnectError("no contribute here")
        return coordinator_and_page(request)

    transport, asked = recording(answer)
    clock = Clock()
    watch = PublicWatch(NodeIdentity.load_or_create(tmp_path), 11441, clock=clock, wall=lambda: 7.0,
                        transport=transport)

    async def step(coordinator: str | None) -> Figures:
        clock.t += EVERY_S
        watch.figures(coordinator)
        await settle(watch)
        return watch.figures(coordinator)

    async def main() -> tuple[Figures, list[str], Figures, Figures]:
        private = await step(None)
        only_page = list(asked)
        up = await step(COORD)
        down["now"] = True
        return private, only_page, up, await step(COORD)

    private, only_page, up, gone = asyncio.run(main())
    assert private == Figures() and only_page == ["11441/served.json"]
    assert up.connected and up.balance == 9_500_000 and not up.contributing
    assert not gone.connected and gone.problem == "the coordinator is unreachable"
    assert (gone.balance, gone.held, gone.swarm_workers, gone.checked_at) == (9_500_000, 250_000, 3, 7.0)


def test_another_coordinator_forgets_the_last_ones_figures(tmp_path: Path) -> None:
    transport, _ = recording(coordinator_and_page)
    watch = PublicWatch(NodeIdentity.load_or_create(tmp_path), 0, transport=transport)

    async def main() -> tuple[Figures, Figures]:
        watch.figures(COORD)
        await settle(watch)
        return watch.figures(COORD), watch.figures("http://127.0.0.1:11450")

    known, other = asyncio.run(main())
    assert known.connected and other == Figures()


# -- junk on a real socket ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [*ANSWERS, "slow"])
def test_junk_from_a_real_server_is_ignored_quickly(tmp_path: Path, mode: str) -> None:
    with junk_server() as junk:
        junk.mode = mode
        watch = PublicWatch(NodeIdentity.load_or_create(tmp_path), junk.port, timeout_s=1.0)

        async def main() -> tuple[float, Figures]:
            t0 = time.monotonic()
            watch.figures(junk.url)
            took = time.monotonic() - t0
            await asyncio.wait_for(settle(watch), 5)
            return took, watch.figures(junk.url)

        took, figures = asyncio.run(main())
    assert took < 0.1 and not figures.connected and not figures.contributing and figures.problem
    assert figures.balance is None and figures.swarm_workers is None and figures.jobs_served == 0
    assert {"/served.json", "/v1/credits", "/v1/swarm"} <= set(junk.asked) or mode == "slow"
