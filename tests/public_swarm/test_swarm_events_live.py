"""`GET /v1/swarm/events` on a real coordinator (serve.run_coordinator: uvicorn on 127.0.0.1, real
WebSocket links, the dispatcher, SQLite) with a scripted worker over a real socket (dispatch_live:
no model is loaded, so the test takes a few seconds): a worker linking, a paid job's queue,
dispatch and end (its cost the one the requester was charged), the worker leaving, replays with
`?since=` and `Last-Event-ID`; malformed input is a 400 and never a 500; a client's fifth stream
is a 429; no event carries the requester's id or key, a full worker id, a job id, the prompt or
the output; a spot-check is one `check_done`; and the health page lists the events live in
headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.net import b64
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.wire import SWARM_EVENTS, UNSIGNED
from tests.public_swarm.browser_kit import chromium, page_after
from tests.public_swarm.dispatch_kit import MODEL, PRICE
from tests.public_swarm.dispatch_live import PROMPT_TOKENS, TEXT, ScriptedWorker, coordinator, identity, ledger_of

ASKER = identity(21)
PROMPT = "Tell me about the secret garden of Ilse"
BODY = {"model": MODEL.name, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}


async def read_events(client: httpx.AsyncClient, until: Any, headers: dict[str, str] | None = None,
                      query: str = "") -> list[dict[str, Any]]:
    """Read the stream until `until(events)` holds (10 s at most); the events' JSON, in order."""
    events: list[dict[str, Any]] = []

    async def read() -> None:
        async with client.stream("GET", SWARM_EVENTS + query, headers=headers) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            seq = None
            async for line in r.aiter_lines():
                if line.startswith("id: "):
                    seq = int(line[4:])
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    assert event["seq"] == seq
                    events.append(event)
                    if until(events):
                        return

    await asyncio.wait_for(read(), 10)
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


def test_a_worker_and_a_job_stream_then_replay_without_secrets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    async def main() -> tuple[list[dict[str, Any]], dict[str, Any], int, list[str], list[Any]]:
        async with coordinator(tmp_path, url, heartbeat_s=0.5) as base, \
                httpx.AsyncClient(base_url=base, timeout=30) as anyone:
            live = asyncio.create_task(read_events(anyone, lambda es: "worker_left" in kinds(es)))
            await asyncio.sleep(0.3)  # the stream is open before anything happens
            worker = await ScriptedWorker(identity(22)).start(base)
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-events-1")
                async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=30) as asker:
                    r = await asker.post("/v1/chat/completions", json=BODY)
                    assert r.status_code == 200, r.text
                    await asyncio.sleep(0.3)  # the books close just after the job's row says done
                    charged = 2 * 10**6 - ledger.balance(ASKER.node_id)  # the grant and the welcome
            await worker.stop()
            events = await live
            with ledger_of(url) as ledger:
                job_ids = [j.id for j in JobQueue(ledger.engine).list_for(ASKER.node_id)]
            again = await read_events(anyone, lambda es: len(es) == len(events), query="?since=0")
            resumed = await read_events(anyone, lambda es: es[-1]["seq"] == events[-1]["seq"],
                                        headers={"Last-Event-ID": "2"})
            assert again == events
            assert [e["seq"] for e in resumed] == [e["seq"] for e in events if e["seq"] > 2]
            return events, r.json(), charged, job_ids, [worker.me, ASKER]

    events, answer, charged, job_ids, (worker, asker) = asyncio.run(main())
    assert kinds(events) == ["worker_joined", "job_queued", "job_dispatched", "job_done", "worker_left"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    joined, queued, dispatched, done, left = (e["data"] for e in events)
    short = worker.node_id[:12]
    assert joined == {"worker": short, "models": MODEL.name, "n_models": 1}
    assert queued == {"model": MODEL.name} and dispatched == {"model": MODEL.name, "worker": short}
    cost = (PROMPT_TOKENS + 8) * PRICE
    assert done["model"] == MODEL.name and done["tokens"] == 8 == answer["usage"]["completion_tokens"]
    assert done["cost"] == cost == answer["usage"]["cost_credits"] == charged
    assert 0 <= done["ms"] < 30_000
    assert events[3]["message"] == f"job done: {MODEL.name}, 8 tokens, 0.008985 credits, {done['ms']} ms"
    assert left == {"worker": short, "reason": "disconnected"}
    assert SWARM_EVENTS in UNSIGNED
    text = json.dumps(events)
    secrets = [asker.node_id, b64.encode(asker.public_key), asker.public_key.hex(), worker.node_id,
               b64.encode(worker.public_key), worker.public_key.hex(), PROMPT, TEXT,
               "secret garden", answer["id"], *job_ids]
    assert job_ids and not [s for s in secrets if s and s in text]


def test_bad_input_is_a_400_and_a_fifth_stream_a_429(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    bad_since = ["abc", "-1", "1.5", "", "99999999999999999999", "9007199254740993", "\uff11", "1e3", " 1 2"]
    bad_ids = ["abc", "-1", "1.5", "99999999999999999999", "0x10"]

    async def main() -> tuple[list[int], list[int], list[int], list[int]]:
        async with coordinator(tmp_path, url) as base, httpx.AsyncClient(base_url=base, timeout=10) as c:
            since = [(await c.get(SWARM_EVENTS, params={"since": s})).status_code for s in bad_since]
            ids = [(await c.get(SWARM_EVENTS, headers={"Last-Event-ID": h})).status_code for h in bad_ids]
            body = (await c.get(SWARM_EVENTS + "?since=abc")).json()
            assert body["error"]["param"] == "since" and body["error"]["type"] == "invalid_request_error"
            opened = []
            async with contextlib.AsyncExitStack() as stack:
                for query in ("", "?every=abc", "?every=-1", "?since=0&every=1e309"):  # `every` is not a parameter
                    r = await stack.enter_async_context(c.stream("GET", SWARM_EVENTS + query))
                    opened.append(r.status_code)
                fifth = await c.get(SWARM_EVENTS)
                assert fifth.json()["error"]["code"] == "too_many_streams" and fifth.headers["retry-after"]
                opened.append(fifth.status_code)
            posted = [(await c.post(SWARM_EVENTS)).status_code]
            return since, ids, opened, posted

    since, ids, opened, posted = asyncio.run(main())
    assert since == [400] * len(bad_since)
    assert ids == [400] * len(bad_ids)
    assert opened == [200, 200, 200, 200, 429]
    assert posted == [405]


def test_a_spot_check_is_one_check_done_and_no_job_events(tmp_path: Path) -> None:
    """With spot-checks on and every job checked (`random` fixed): a greedy job served by one
    scripted worker is checked by another; the stream says so once, naming the checked worker by
    its short id, and the check job itself is not a requester's job_* event."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    async def main() -> tuple[list[dict[str, Any]], str, str]:
        async with coordinator(tmp_path, url, checks=True, random=lambda: 0.0) as base, \
                httpx.AsyncClient(base_url=base, timeout=30) as anyone:
            live = asyncio.create_task(read_events(anyone, lambda es: "check_done" in kinds(es)))
            await asyncio.sleep(0.3)
            served = await ScriptedWorker(identity(23)).start(base)
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-events-2")
            async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=30) as asker:
                assert (await asker.post("/v1/chat/completions", json=BODY)).status_code == 200
            checker = await ScriptedWorker(identity(24)).start(base)  # another owner: may check it
            events = await live
            for w in (served, checker):
                await w.stop()
            return events, served.me.node_id, checker.me.node_id

    events, served, checker = asyncio.run(main())
    assert kinds(events) == ["worker_joined", "job_queued", "job_dispatched", "job_done", "worker_joined",
                             "check_done"]
    assert events[-1]["data"] == {"verdict": "passed", "worker": served[:12]}
    assert events[-1]["message"] == f"check passed of {served[:12]}…"
    assert served not in json.dumps(events) and checker not in json.dumps(events)


@pytest.mark.slow
def test_the_health_page_shows_the_events_in_headless_chromium(tmp_path: Path) -> None:
    """The page's script follows the stream (EventSource, allowed by the page's CSP `connect-src
    'self'`) and lists each event's line, newest first, as text."""
    browser = chromium()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    async def main() -> str:
        async with coordinator(tmp_path, url) as base:
            worker = await ScriptedWorker(identity(25)).start(base)
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-events-3")
            async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=30) as asker:
                assert (await asker.post("/v1/chat/completions", json=BODY)).status_code == 200
            await asyncio.sleep(0.3)
            dom = await page_after(browser, base + "/", tmp_path / "profile", 4.0)
            await worker.stop()
        return dom

    dom = asyncio.run(main())
    items = re.findall(r'<li data-kind="([a-z_]+)"><time>[^<]*</time>([^<]*)</li>', dom)
    assert [k for k, _ in items] == ["job_done", "job_dispatched", "job_queued", "worker_joined"], dom[-3000:]
    assert items[0][1] == f"job done: {MODEL.name}, 8 tokens, 0.008985 credits, " + items[0][1].split(", ")[-1]
    assert re.search(r'id="events-status"[^>]*>connected\.<', dom)
