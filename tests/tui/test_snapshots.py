"""The main screen, drawn from fixed data (tests/tui/fixed.py), at 80x24 and 120x40. A changed
drawing fails here: look at the report, then `pytest tests/tui --snapshot-update` if it is right."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from textual.pilot import Pilot

from hearth.tui.app import DashApp
from tests.tui.fixed import fixed_source


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Event times are shown in local time; the snapshots are drawn in UTC wherever they run."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def settled(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, DashApp)
    await app.settled.wait()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_main_screen(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    assert snap_compare(DashApp(fixed_source()), terminal_size=size, run_before=settled)


def test_main_screen_in_a_light_theme(snap_compare: Callable[..., bool]) -> None:
    """Every colour is a theme variable, so a light theme keeps each panel readable."""
    async def light(pilot: Pilot[None]) -> None:
        pilot.app.theme = "textual-light"
        await settled(pilot)

    assert snap_compare(DashApp(fixed_source()), terminal_size=(80, 24), run_before=light)
