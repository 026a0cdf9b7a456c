"""The event stream's life on the real app over real sockets (uvicorn on 127.0.0.1, as `hearth serve`
runs it), no model loaded: heartbeats when idle (the interval shortened through the route's
dependency), the bounds per client and per feed, a slot freed when its reader leaves, and the
status of a server that has loaded nothing yet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hearth.net.pump import listening_socket
from hearth.net.webserve import web_server
from hearth.node_api.feed import Feed
from hearth.node_api.feed_sse import heartbeat_s
from hearth.node_api.status import SERVE_EVENTS_PATH, STATUS_PATH, ServeStatus
from hearth.orchestrator.engines import EnginePool
from hearth.server.app import create_app
from hearth.settings import Settings, load_settings


@contextlib.asynccontextmanager
async def serving(home: Path, feed: Feed) -> AsyncIterator[str]:
    settings: Settings = load_settings(home=home, models_dir=home / "models")
    app = create_app(settings, EnginePool(settings), feed)
    app.dependency_overrides[heartbeat_s] = lambda: 0.2
    server = web_server(app, settings, "127.0.0.1")
    sock = listening_socket("127.0.0.1", 0)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


def test_idle_streams_get_heartbeats_then_events(tmp_path: Path) -> None:
    async def main() -> str:
        feed = Feed()
        async with serving(tmp_path, feed) as url, httpx.AsyncClient(timeout=10) as c:
            async with c.stream("GET", url + SERVE_EVENTS_PATH) as r:
                assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
                raw = ""
                async for chunk in r.aiter_text():
                    raw += chunk
                    if raw.count(": keep-alive") == 3:
                        feed.publish("settings_changed", "radius trusted", radius="trusted")
                    if "settings_changed" in raw:
                        return raw
        return ""

    raw = asyncio.run(main())
    assert raw.count(": keep-alive\n\n") >= 3 and "id: 1\nevent: settings_changed\ndata: {" in raw


def test_streams_are_bounded_per_feed_and_a_leaving_reader_frees_its_slot(tmp_path: Path) -> None:
    async def main() -> tuple[list[int], int, int]:
        feed = Feed(max_subscribers=2)
        async with serving(tmp_path, feed) as url, httpx.AsyncClient(timeout=10) as c:
            codes = []
            async with c.stream("GET", url + SERVE_EVENTS_PATH) as a, c.stream("GET", url + SERVE_EVENTS_PATH) as b:
                codes += [a.status_code, b.status_code]
                third = await c.get(url + SERVE_EVENTS_PATH)
                codes.append(third.status_code)
                assert third.json()["error"]["code"] == "too_many_streams" and third.headers["retry-after"]
                held = feed.subscribers
            for _ in range(50):  # the server notices within its poll (1 s)
                if feed.subscribers == 0:
                    break
                await asyncio.sleep(0.1)
            return codes, held, feed.subscribers

    codes, held, left = asyncio.run(main())
    assert codes == [200, 200, 429] and held == 2 and left == 0


def test_status_before_any_model_is_loaded(tmp_path: Path) -> None:
    async def main() -> dict[str, object]:
        async with serving(tmp_path, Feed()) as url, httpx.AsyncClient(timeout=10) as c:
            r = await c.get(url + STATUS_PATH)
            assert r.status_code == 200
            return r.json()  # type: ignore[no-any-return]

    body = asyncio.run(main())
    status = ServeStatus.model_validate(body)
    assert status.model is None and status.layer_map is None and status.requests == []
    assert status.throughput.samples == [] and [n.radius for n in status.nodes] == ["machine"]
    assert status.nodes[0].state == "up" and body["placement"] is None and body["busy"] is False


@pytest.mark.parametrize("header", ["abc", "-1", "1.5", "99999999999999999999"])
def test_a_bad_last_event_id_is_a_400(tmp_path: Path, header: str) -> None:
    async def main() -> httpx.Response:
        async with serving(tmp_path, Feed()) as url, httpx.AsyncClient(timeout=10) as c:
            return await c.get(url + SERVE_EVENTS_PATH, headers={"Last-Event-ID": header})

    r = asyncio.run(main())
    assert r.status_code == 400 and r.json()["error"]["param"] == "Last-Event-ID"
