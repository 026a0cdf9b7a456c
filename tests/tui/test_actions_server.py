"""The dashboard's server actions (r radius, c max price, m model) against a real `hearth serve`
with the real model; errors become notifications, never a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from textual.command import CommandPalette
from textual.widgets import Input

from hearth.escalation.consent import remembered
from hearth.server import control_routes
from hearth.settings import load_settings
from hearth.tui import control_client
from hearth.tui.actions import ActionContext, parse_price
from hearth.tui.screens import ConfirmScreen, ModelPicker, PriceScreen, RadiusScreen
from tests.conftest import Server, free_port, start_server, stop_server
from tests.tui.actions_kit import ActionsApp, until

pytestmark = pytest.mark.slow
COORDINATOR = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def serve(models_home: Path) -> Iterator[Server]:
    srv = start_server(models_home, HEARTH_COORDINATOR=COORDINATOR)
    yield srv
    stop_server(srv)


DASH_OWN = "http://127.0.0.1:7"
"""The dashboard's own HEARTH_COORDINATOR: another than the server's, which the consent names."""


def context(server_url: str, home: Path) -> ActionContext:
    return ActionContext(load_settings(home=home, coordinator=DASH_OWN), url=server_url)


def test_the_paths_agree_with_the_server() -> None:
    assert (control_client.RADIUS_PATH, control_client.MAX_PRICE_PATH, control_client.LOAD_PATH) == (
        control_routes.RADIUS_PATH, control_routes.MAX_PRICE_PATH, control_routes.LOAD_PATH)


def test_radius_then_public_with_consent(serve: Server, tmp_path: Path) -> None:
    app = ActionsApp(context(serve.url, tmp_path))

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RadiusScreen), 10, "the radius dialog")
            await pilot.press("enter")  # machine, the first
            await until(pilot, lambda: app.said("radius is now machine"), 20)
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RadiusScreen), 10)
            await pilot.press("down", "down", "down", "enter")  # public: asks first
            await until(pilot, lambda: "public swarm" in str(app.screen.query("Static").first().render()), 10)
            asked = str(app.screen.query("Static").first().render())
            assert COORDINATOR in asked and DASH_OWN not in asked
            await pilot.press("y")
            await until(pilot, lambda: app.said("radius is now public"), 20)
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RadiusScreen), 10)
            await pilot.press("down", "enter")  # household: the public radius ends
            await until(pilot, lambda: app.said("radius is now household"), 20)

    asyncio.run(main())
    assert remembered(serve.home) == {COORDINATOR}
    assert not app.crashed


def test_max_price_and_a_wrong_one(serve: Server, tmp_path: Path) -> None:
    app = ActionsApp(context(serve.url, tmp_path))

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, PriceScreen), 10)
            await pilot.press("minus", "3", "enter")
            await until(pilot, lambda: app.said("1 or more", "error"), 10)
            assert isinstance(app.screen, PriceScreen)  # still open: type again
            app.screen.query_one(Input).value = "5_000"
            await pilot.press("enter")
            await until(pilot, lambda: app.said("Price ceiling: 5,000 credits per million tokens"), 20)
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, PriceScreen), 10)
            await pilot.press("enter")
            await until(pilot, lambda: app.said("Price ceiling: no ceiling"), 20)

    asyncio.run(main())
    assert not app.crashed


def test_choose_a_model_loads_it_with_progress(serve: Server, tmp_path: Path) -> None:
    app = ActionsApp(context(serve.url, serve.home))

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("m")
            await until(pilot, lambda: isinstance(app.screen, ModelPicker), 10)
            picker = app.screen
            assert isinstance(picker, ModelPicker)
            names = [c.name for c in picker.choices]
            assert "smollm2-135m" in names and "qwen2.5-7b" in names  # stored, and what can be pulled
            await pilot.press(*["down"] * names.index("smollm2-135m"), "enter")
            await until(pilot, lambda: app.said("smollm2-135m loaded."), 120)

    asyncio.run(main())
    assert httpx.get(serve.url + "/hearth/status", timeout=10).json()["model"] == "smollm2-135m"
    assert not app.crashed


def test_nothing_running_is_a_notification(tmp_path: Path) -> None:
    app = ActionsApp(context(f"http://127.0.0.1:{free_port()}", tmp_path))

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RadiusScreen), 10)
            await pilot.press("enter")
            await until(pilot, lambda: app.said("start `hearth serve`", "error"), 20)
            await pilot.press("m")
            await until(pilot, lambda: isinstance(app.screen, ModelPicker), 10)
            await pilot.press("enter")
            await until(pilot, lambda: len([n for n in app.notes if n[0] == "error"]) == 2, 20)
            await pilot.press("ctrl+p")  # the palette runs the same actions
            await until(pilot, lambda: isinstance(app.screen, CommandPalette), 10)
            await pilot.press(*"drain")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the drain question")
            await pilot.press("n")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), 10)

    asyncio.run(main())
    assert not app.crashed


def test_parse_price() -> None:
    assert parse_price("") is None and parse_price(" 1,000 ") == 1000
    for bad in ("-3", "0", "1.5", "ten", "9" * 19):
        with pytest.raises(Exception, match="1 or more"):
            parse_price(bad)
