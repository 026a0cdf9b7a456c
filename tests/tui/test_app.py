"""DashApp's loops with a scripted source (no server: what is tested is the app's reaction)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hearth.node_api.status import DashEvent, ServeStatus
from hearth.tui.app import DashApp
from hearth.tui.source import FixedSource
from hearth.tui.widgets.events import EventLog
from tests.tui.fixed import NOW, fixed_circle, fixed_events, fixed_status


class Restarting(FixedSource):
    """A server that restarts after its second status: a new start time, events from seq 1 again."""

    def __init__(self) -> None:
        super().__init__(fixed_status(), fixed_events(), fixed_circle(), now=NOW)
        self.polls = 0
        self.asked: list[int] = []

    async def status(self) -> ServeStatus:
        self.polls += 1
        return self._status if self.polls <= 2 else self._status.model_copy(update={"started_at": NOW})

    async def events(self, since: int) -> AsyncIterator[DashEvent]:
        self.asked.append(since)
        again = [DashEvent(seq=1, at=NOW, kind="model_loaded", message="loaded after the restart")]
        for event in fixed_events() if len(self.asked) == 1 else again:
            if event.seq > since:
                yield event
        await asyncio.Event().wait()


def test_a_restarted_server_is_followed_from_its_first_event_again() -> None:
    source = Restarting()

    async def go() -> list[str]:
        app = DashApp(source, poll_s=0.05)
        async with app.run_test(size=(80, 24)) as pilot:
            log = app.query_one(EventLog)
            for _ in range(100):
                if any("after the restart" in line for line in log.entries):
                    break
                await pilot.pause(0.05)
            return list(log.entries)
    lines = asyncio.run(go())
    assert source.asked == [0, 0]
    assert any("restarted" in line for line in lines)
    assert lines[-1].endswith("loaded after the restart")  # the entry, before it is wrapped to the log's width
    assert sum("model_loaded" in line for line in lines) == 2


def test_the_title_says_how_many_slots_are_busy_when_the_server_reports_them() -> None:
    app = DashApp(FixedSource(fixed_status(), fixed_events(), fixed_circle(), now=NOW))
    app.status = fixed_status()  # an older server: no slots
    assert "1 busy" in app.title_line().plain
    app.status = fixed_status().model_copy(update={"slots": 4, "active": 3, "waiting": 2})
    assert "3/4 slots busy  2 waiting" in app.title_line().plain
    app.status = fixed_status().model_copy(update={"slots": 4, "active": 0, "busy": False})
    assert "busy" not in app.title_line().plain
