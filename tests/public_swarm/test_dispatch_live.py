"""The dispatcher live on SQLite and a real PostgreSQL: a real coordinator (uvicorn, real WebSocket links) and scripted
workers over real sockets (stand-ins for `hearth contribute` until the job runner is merged; see
dispatch_live). A job streams to its requester as OpenAI SSE and is settled once; a worker that goes
silent mid-stream is noticed by the heartbeat and its job resumes on another worker, the requester's
stream going on and the job billed once, each worker for its part; a client that leaves mid-stream
cancels its job and pays for what streamed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.dispatch_rules import prompt_cap
from hearth.public_swarm.coordinator.job_rules import JobState
from hearth.public_swarm.coordinator.jobs import JobQueue
from tests.public_swarm.dispatch_kit import MODEL, PRICE, Allowance, chat
from tests.public_swarm.dispatch_live import (
    PROMPT_TOKENS,
    TEXT,
    ScriptedWorker,
    coordinator,
    identity,
    ledger_of,
    sse_events,
    wait_until,
)

pytestmark = pytest.mark.slow
ASKER = identity(9)
BODY = {"model": MODEL.name, "messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 16}


async def _stream(base: str, body: dict[str, object]) -> tuple[httpx.Response, list[object]]:
    async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=60) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            lines = [line async for line in r.aiter_lines()]
    return r, sse_events(lines)


def test_a_job_streams_and_is_settled_once(tmp_path: Path, ledger_url: str) -> None:
    url = ledger_url

    async def main() -> None:
        async with coordinator(tmp_path, url) as base:
            worker = await ScriptedWorker(identity(1)).start(base)
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-live-1")
                r, events = await _stream(base, BODY)
                assert r.status_code == 200 and events[-1] == "[DONE]"
                held = int(r.headers["x-hearth-max-cost"])
                text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
                last = events[-2]
                assert text == TEXT and last["choices"] == []
                cost = (PROMPT_TOKENS + len(worker.offered) * 8) * PRICE
                assert last["usage"]["cost_credits"] == cost and last["usage"]["price"] == PRICE
                assert last["hearth"]["workers"] == [worker.me.node_id] and last["hearth"]["receipt"]
                assert held == (prompt_cap(chat()) + 16) * PRICE
                await asyncio.sleep(0.3)
                welcome = 10**6  # every signed identity's first request brings its welcome grant
                assert ledger.balance(ASKER.node_id) == 10**6 + welcome - cost
                assert ledger.balance(worker.me.node_id) == cost and ledger.audit() == []
                # a plain (non-stream) request, unsigned: refused without an allowance
                async with httpx.AsyncClient(base_url=base, timeout=60) as anon:
                    refused = await anon.post("/v1/chat/completions", json=BODY)
                    assert refused.status_code == 401 and refused.json()["error"]["code"] == "signature_required"
                    models = (await anon.get("/v1/models")).json()["data"]
                    assert [(m["id"], m["workers"], m["price"]) for m in models] == [(MODEL.name, 1, PRICE)]
                async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=60) as client:
                    plain = await client.post("/v1/chat/completions", json=BODY)
                    got = plain.json()
                    assert plain.status_code == 200, got
                    assert got["choices"][0]["message"]["content"] == TEXT
                    assert int(plain.headers["x-hearth-cost"]) == got["usage"]["cost_credits"] == cost
                    await asyncio.sleep(0.3)  # the books close just after the job's row says done
                    before = ledger.balances()
                    high = await client.post("/v1/chat/completions", json=BODY, headers={"X-Hearth-Max-Price": "1"})
                    assert high.status_code == 402 and high.json()["error"]["code"] == "price_above_ceiling"
                    gone = await client.post("/v1/chat/completions", json={**BODY, "model": "no-such-model"})
                    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_served"
                    assert ledger.balances() == before
            await worker.stop()

    asyncio.run(main())


def test_a_silent_worker_is_noticed_and_its_job_resumes_elsewhere(tmp_path: Path, ledger_url: str) -> None:
    url = ledger_url

    async def main() -> None:
        async with coordinator(tmp_path, url, heartbeat_s=1.0) as base:  # dead after 3 s of silence
            dying = await ScriptedWorker(identity(1), hang_after=3, slow_s=0.05).start(base)
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-live-2")
                request = asyncio.create_task(_stream(base, BODY))
                await asyncio.wait_for(dying.accepted.wait(), 20)
                other = await ScriptedWorker(identity(2)).start(base)
                await wait_until("the first worker to go silent", lambda: dying.hung)
                hung_at = time.monotonic()
                r, events = await request
                took = time.monotonic() - hung_at
                text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
                last = events[-2]
                assert text == TEXT, events
                assert other.offered[0].request.resume is not None
                assert other.offered[0].request.resume.token_ids == [1, 2, 3]
                assert last["hearth"]["workers"] == [dying.me.node_id, other.me.node_id]
                cost = (PROMPT_TOKENS + 8) * PRICE
                assert last["usage"]["cost_credits"] == cost and last["usage"]["completion_tokens"] == 8
                await asyncio.sleep(0.3)
                assert ledger.balance(dying.me.node_id) == 3 * PRICE
                assert ledger.balance(other.me.node_id) == (5 + PROMPT_TOKENS) * PRICE
                assert ledger.balance(ASKER.node_id) == 2 * 10**6 - cost and ledger.audit() == []
                print(f"silent worker: job finished on the other {took:.1f} s after it went silent")
            await dying.stop()
            await other.stop()

    asyncio.run(main())


def test_a_client_leaving_mid_stream_cancels_and_pays_what_streamed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"

    async def main() -> None:
        async with coordinator(tmp_path, url) as base:
            worker = await ScriptedWorker(identity(1), slow_s=0.3).start(base)
            with ledger_of(url) as ledger, JobQueue.open(url) as queue:
                ledger.grant(ASKER.node_id, 10**6, "grant-live-3")
                async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=60) as client:
                    async with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as r:
                        seen = 0
                        async for line in r.aiter_lines():
                            seen += line.startswith("data: ")
                            if seen >= 3:  # the role chunk and two tokens
                                break
                jobs = queue.list_for(ASKER.node_id)
                await wait_until("the job cancelled", lambda: queue.get(jobs[0].id).state is JobState.CANCELLED)
                await asyncio.sleep(0.8)
                job = queue.get(jobs[0].id)
                assert job is not None and 2 <= job.tokens < 8 and not worker.finished
                paid = ledger.balance(worker.me.node_id)
                assert paid == job.tokens * PRICE and ledger.balance(ASKER.node_id) == 2 * 10**6 - paid
                assert ledger.holds_of(ASKER.node_id) == [] and ledger.audit() == []
            await worker.stop()

    asyncio.run(main())


def test_a_client_leaving_a_plain_request_cancels_it_too(tmp_path: Path) -> None:
    """Not only streams: a non-streaming client that times out stops its job and pays what streamed."""
    url = f"sqlite:///{tmp_path / 'c.db'}"

    async def main() -> None:
        async with coordinator(tmp_path, url) as base:
            worker = await ScriptedWorker(identity(1), slow_s=0.3).start(base)
            with ledger_of(url) as ledger, JobQueue.open(url) as queue:
                ledger.grant(ASKER.node_id, 10**6, "grant-live-4")
                async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=1.2) as client:
                    with pytest.raises(httpx.ReadTimeout):
                        await client.post("/v1/chat/completions", json=BODY)
                jobs = queue.list_for(ASKER.node_id)
                await wait_until("the job cancelled", lambda: queue.get(jobs[0].id).state is JobState.CANCELLED)
                await asyncio.sleep(0.8)
                job = queue.get(jobs[0].id)
                assert job is not None and job.tokens < 16 and not worker.finished
                assert ledger.balance(ASKER.node_id) == 2 * 10**6 - ledger.balance(worker.me.node_id)
                assert ledger.holds_of(ASKER.node_id) == [] and ledger.audit() == []
            await worker.stop()

    asyncio.run(main())


def test_unsigned_requests_use_the_free_allowance_and_the_operator_pays(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    allowance = Allowance(1000)

    async def main() -> None:
        async with coordinator(tmp_path, url, allowance=allowance) as base:
            worker = await ScriptedWorker(identity(1)).start(base)
            async with httpx.AsyncClient(base_url=base, timeout=60) as anon:
                r = await anon.post("/v1/chat/completions", json=BODY)
                got = r.json()
                assert r.status_code == 200, got
                assert got["choices"][0]["message"]["content"] == TEXT and got["usage"]["cost_credits"] == 0
                used = PROMPT_TOKENS + 8
                await asyncio.sleep(0.3)
                assert allowance.left["127.0.0.1"] == 1000 - used  # the unused part came back
                with ledger_of(url) as ledger:
                    assert ledger.balance(worker.me.node_id) == used * PRICE and ledger.audit() == []
                refused = await anon.post("/v1/chat/completions", json={**BODY, "max_tokens": 2000})
                assert refused.status_code == 429 and refused.json()["error"]["code"] == "free_allowance_used"
            await worker.stop()

    asyncio.run(main())
