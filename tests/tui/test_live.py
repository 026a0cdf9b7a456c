"""The dashboard against a real `hearth serve` with the real model (the session's `server`): the
snapshot CLI reads its status, and the live app shows the loaded model and, after a real
request, that request in its event log (the server's own event stream)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx

from hearth.settings import load_settings
from hearth.tui.app import DashApp
from hearth.tui.client import DashClient
from hearth.tui.source import LiveSource
from hearth.tui.widgets.events import EventLog
from tests.cli.inprocess import hearth_here
from tests.conftest import Server

MODEL = "smollm2-135m"


async def ask(url: str) -> None:
    async with httpx.AsyncClient(timeout=120) as http:
        answer = await http.post(url + "/v1/chat/completions", json={
            "model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi"}]})
        assert answer.status_code == 200, answer.text


async def until(check: Callable[[], bool], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "the dashboard never showed it"
        await asyncio.sleep(0.1)


def test_the_dashboard_shows_the_model_and_a_real_request_in_its_event_log(server: Server, tmp_path: Path) -> None:
    source = LiveSource(DashClient(server.url), load_settings(home=tmp_path), wait=0.0)

    async def go() -> tuple[str, list[str]]:
        app = DashApp(source)
        async with app.run_test(size=(120, 40)) as pilot:
            await asyncio.wait_for(app.settled.wait(), 30)
            log = app.query_one(EventLog)
            before = log.last_seq
            await ask(server.url)
            await until(lambda: app.status is not None and app.status.model == MODEL, 30)
            await until(lambda: any("request_done" in line for line in log.entries), 30)
            await pilot.pause()
            assert log.last_seq > before
            return str(app.query_one("#title").render()), list(log.entries)
    title, lines = asyncio.run(go())
    assert MODEL in title
    assert any("request_done" in line for line in lines), lines


def test_once_json_prints_the_running_servers_status(server: Server, tmp_path: Path) -> None:
    result = hearth_here(tmp_path, "dash", "--once", "--json", "--url", server.url, "--wait", "0")
    assert result.code == 0, result.stderr
    shot = json.loads(result.stdout)
    assert shot["error"] is None and shot["url"] == server.url
    assert shot["status"]["version"] and "throughput" in shot["status"]
    assert shot["peers"] == []
