"""Async jobs end to end over real sockets: `hearth coordinator`'s serving coroutine with the live
Dispatcher and the database Allowance, and a scripted worker on a real WebSocket link (the
stand-in dispatch_live.ScriptedWorker: the real job runner is another helper's, not merged yet).

A signed job submitted through JobsClient runs while nobody follows it and `result(wait=True)`
returns its text and usage; an anonymous job is paid by its address's free allowance, which gets
the unused part back; /v1/swarm then counts the tokens and the done jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from hearth.public_swarm.coordinator.allowance import Allowance
from hearth.public_swarm.coordinator.jobs_client import JobsClient, job_submit
from hearth.public_swarm.ledger.db import Ledger
from tests.public_swarm.dispatch_kit import MODEL, PRICE
from tests.public_swarm.dispatch_live import PROMPT_TOKENS, TEXT, ScriptedWorker, coordinator, identity

PER_DAY = 5_000


def test_jobs_run_unattended_and_are_read_later(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    asker = identity(7)

    async def main() -> None:
        with Ledger.open(url) as ledger:
            allowance = Allowance(ledger.engine, tokens_per_day=PER_DAY)
            async with coordinator(tmp_path, url, allowance=allowance) as base:
                worker = await ScriptedWorker(identity(1)).start(base)
                async with JobsClient(base, asker) as jobs, httpx.AsyncClient(base_url=base, timeout=30) as anon:
                    job = await jobs.submit(job_submit(MODEL.name, "Say hello.", max_tokens=16))
                    free = await anon.post("/v1/jobs", json={"model": MODEL.name, "prompt": "Hi", "max_tokens": 16})
                    assert free.status_code == 202, free.text
                    done = await jobs.result(job.id, wait=True, timeout=30, poll_s=0.2)
                    assert done.state == "done" and done.result is not None, done
                    assert done.result.text == TEXT and done.result.finish_reason == "stop"
                    usage = done.result.usage
                    assert (usage.prompt_tokens, usage.completion_tokens, usage.price) == (PROMPT_TOKENS, 8, PRICE)
                    assert usage.cost_credits == (PROMPT_TOKENS + 8) * PRICE
                    for _ in range(100):
                        anon_job = (await anon.get(f"/v1/jobs/{free.json()['id']}")).json()
                        if anon_job["state"] == "done":
                            break
                        await asyncio.sleep(0.2)
                    assert anon_job["state"] == "done" and anon_job["result"]["text"] == TEXT
                    assert anon_job["result"]["usage"]["cost_credits"] == 0
                    left, _ = allowance.left("127.0.0.1")
                    assert left == PER_DAY - (PROMPT_TOKENS + 8), left  # the unused part came back
                    await asyncio.sleep(2.1)  # the health snapshot is rebuilt at most every 2 s
                    swarm = (await anon.get("/v1/swarm")).json()
                    assert swarm["live_workers"] == 1 and swarm["jobs"]["done"] == 2
                    assert swarm["tokens_per_s_1m"] > 0
                await worker.stop()

    asyncio.run(main())
