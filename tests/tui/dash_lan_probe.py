"""Run inside the orchestrator's namespace by tests/tui/test_dash_lan.py: the real dashboard
(`DashApp` over a `LiveSource`, under `App.run_test()`) watches a pooled `hearth serve`; one
node is killed mid-stream; what the dashboard showed before and after is printed as JSON.

argv: the server's URL, the victim's pids (comma-separated), max_tokens.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import httpx

from hearth.settings import load_settings
from hearth.tui.app import DashApp
from hearth.tui.client import DashClient
from hearth.tui.source import LiveSource
from hearth.tui.widgets.events import EventLog
from hearth.tui.widgets.layer_map import LayerMapView
from hearth.tui.widgets.nodes import NodesView

ASK = "Name three rivers of Europe."


async def until(check: Callable[[], object], seconds: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit(f"the dashboard never showed {what}")
        await asyncio.sleep(0.1)


async def stream(url: str, victims: list[int], max_tokens: int) -> dict[str, Any]:
    """A streamed chat; after its third piece of text, every process of one node gets SIGKILL."""
    body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": ASK}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True}
    text: list[str] = []
    error, killed_at, done = None, None, False
    async with httpx.AsyncClient(timeout=180) as http, \
            http.stream("POST", url + "/v1/chat/completions", json=body) as answer:
        async for line in answer.aiter_lines():
            if line == "data: [DONE]":
                done = True
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                error = chunk["error"]
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                text.append(chunk["choices"][0]["delta"]["content"])
                if len(text) == 3:
                    killed_at = len(text)
                    for pid in victims:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
    return {"text": "".join(text), "pieces": len(text), "error": error, "killed_at": killed_at, "done": done}


def seen(app: DashApp) -> dict[str, Any]:
    """What the dashboard holds and draws: its status's nodes and layer map, and the panels' text."""
    status = app.status
    assert status is not None
    return {"nodes": [n.model_dump(mode="json") for n in status.nodes],
            "layer_map": status.layer_map.model_dump(mode="json") if status.layer_map else None,
            "recoveries": status.recoveries,
            "shown": [n.model_dump(mode="json") for n in app.query_one(NodesView).nodes],
            "nodes_panel": str(app.query_one(NodesView).render()),
            "map_panel": str(app.query_one(LayerMapView).render())}


async def main() -> dict[str, Any]:
    url, victims, max_tokens = sys.argv[1], [int(p) for p in sys.argv[2].split(",")], int(sys.argv[3])
    app = DashApp(LiveSource(DashClient(url), load_settings(), wait=0.5), poll_s=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.settled.wait(), 60)
        await until(lambda: app.status and app.status.pooled and app.status.layer_map, 60, "the pooled model")
        await until(lambda: sum(1 for n in app.query_one(NodesView).nodes if n.used_bytes and n.rtt_ms is not None)
                    >= 2, 30, "the nodes' own readings")
        await pilot.pause()
        before = seen(app)
        answer = await stream(url, victims, max_tokens)
        log = app.query_one(EventLog)
        await until(lambda: any(" failover " in line for line in log.entries), 60, "a failover event")
        await until(lambda: app.status and app.status.layer_map and
                    app.status.layer_map.model_dump(mode="json") != before["layer_map"], 30, "a new layer map")
        await pilot.pause()
        after = seen(app)
        return {"before": before, "after": after, "stream": answer, "events": list(log.entries)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
