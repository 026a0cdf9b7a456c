"""The requester's stream parsing against a real OpenAI-compatible server: `hearth serve` on
127.0.0.1 speaks the same SSE as the coordinator's C1 routes, without the cost part. (The whole
public path, with a real coordinator and worker, is test_public_swarm_e2e.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from hearth.engine.events import Start, Token
from hearth.identity import NodeIdentity
from hearth.public_swarm.requester import PublicRequester
from hearth.public_swarm.sse import PublicStreamInvalid
from tests.conftest import Server

pytestmark = pytest.mark.slow
MODEL, PROMPT = "smollm2-135m", "Name three colours."


def requester_events(url: str, home: Path) -> tuple[list[object], BaseException | None]:
    async def go() -> tuple[list[object], BaseException | None]:
        seen: list[object] = []
        async with PublicRequester(url, NodeIdentity.load_or_create(home)) as r:
            try:
                async for ev in r.run(MODEL, "chat", messages=[{"role": "user", "content": PROMPT}],
                                      max_tokens=12, temperature=0.0, stop=[]):
                    seen.append(ev)
            except PublicStreamInvalid as exc:
                return seen, exc
        return seen, None

    return asyncio.run(go())


def test_the_requester_reads_a_real_openai_servers_stream(server: Server, tmp_path: Path) -> None:
    """`hearth serve` speaks the same SSE as the coordinator but sends no cost: the tokens arrive
    exactly as the server's own non-streamed reply, then the missing cost is a clear error."""
    whole = httpx.post(server.base + "/chat/completions", timeout=120, json={
        "model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12,
        "temperature": 0}).json()["choices"][0]["message"]["content"]
    events, error = requester_events(server.url, tmp_path)
    assert isinstance(events[0], Start)
    assert "".join(e.text for e in events if isinstance(e, Token)) == whole
    assert isinstance(error, PublicStreamInvalid) and "usage.cost_credits" in error.message
