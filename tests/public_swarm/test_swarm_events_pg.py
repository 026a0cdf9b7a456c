"""Two coordinators on one real PostgreSQL, each streaming only its own process's events: a job
opened at B runs on a worker linked to A, so B tells only `job_queued`, and A the worker linking,
the dispatch and the end (A's run made the job final and closed its books)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.wire import SWARM_EVENTS
from tests.public_swarm.dispatch_kit import MODEL
from tests.public_swarm.dispatch_live import ScriptedWorker, coordinator, identity
from tests.public_swarm.test_swarm_events_live import kinds, read_events

pytestmark = pytest.mark.slow


async def everything(client: httpx.AsyncClient, seconds: float) -> list[dict[str, Any]]:
    """What the stream replays from the start and adds within `seconds`."""
    events: list[dict[str, Any]] = []

    async def read() -> None:
        async with client.stream("GET", SWARM_EVENTS + "?since=0") as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), seconds)
    return events


def test_each_coordinator_streams_only_its_own_process(tmp_path: Path, postgres_url: str) -> None:
    asker = identity(31)
    body = {"model": MODEL.name, "prompt": "Once upon a time", "max_tokens": 16}

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with coordinator(tmp_path, postgres_url, name="a") as a, \
                coordinator(tmp_path, postgres_url, name="b") as b, \
                httpx.AsyncClient(base_url=a, timeout=30) as at_a, httpx.AsyncClient(base_url=b, timeout=30) as at_b:
            seen_a = asyncio.create_task(read_events(at_a, lambda es: "job_done" in kinds(es)))
            seen_b = asyncio.create_task(read_events(at_b, lambda es: "job_queued" in kinds(es)))
            await asyncio.sleep(0.3)
            worker = await ScriptedWorker(identity(32)).start(a)
            async with httpx.AsyncClient(base_url=b, auth=SignedAuth(asker), timeout=60) as client:
                for _ in range(100):  # B learns of A's worker from the database (A publishes its links)
                    if (await client.get("/v1/models")).json()["data"]:
                        break
                    await asyncio.sleep(0.1)
                r = await client.post("/v1/completions", json=body)
                assert r.status_code == 200, r.text
            events_a, first_b = await seen_a, await seen_b
            assert kinds(first_b) == ["job_queued"]
            await asyncio.sleep(0.5)
            more_b = await everything(at_b, 1.0)
            await worker.stop()
            return events_a, more_b

    events_a, events_b = asyncio.run(main())
    assert kinds(events_a) == ["worker_joined", "job_dispatched", "job_done"]
    assert kinds(events_b) == ["job_queued"]
