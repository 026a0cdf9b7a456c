"""Two coordinators (two app instances, each with its own dispatcher and links) on one real
PostgreSQL: jobs opened at either are run by workers linked to either, no job is ever offered to
two workers, a requester follows a job that runs at the other coordinator (by its row), and the
books balance. Workers are scripted stand-ins (see dispatch_live) until the job runner is merged."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest

from hearth.pairing.signed import SignedAuth
from tests.public_swarm.dispatch_kit import MODEL, PRICE
from tests.public_swarm.dispatch_live import (
    PROMPT_TOKENS,
    TEXT,
    ScriptedWorker,
    assert_each_job_once_and_books_balance,
    coordinator,
    identity,
    ledger_of,
)

pytestmark = pytest.mark.slow
JOBS = 12


def test_two_coordinators_never_give_one_job_to_two_workers(tmp_path: Path, postgres_url: str) -> None:
    askers = [identity(20 + i) for i in range(3)]

    async def ask(base: str, who: int) -> dict[str, object]:
        body = {"model": MODEL.name, "prompt": "Once upon a time", "max_tokens": 16}
        async with httpx.AsyncClient(base_url=base, auth=SignedAuth(askers[who]), timeout=90) as client:
            r = await client.post("/v1/completions", json=body)
            assert r.status_code == 200, r.text
            return dict(r.json())

    async def main() -> None:
        async with coordinator(tmp_path, postgres_url, name="a") as a, \
                coordinator(tmp_path, postgres_url, name="b") as b:
            workers = [await ScriptedWorker(identity(i + 1), max_jobs=2, slow_s=0.01).start(base)
                       for i, base in enumerate([a, a, b])]  # b's jobs mostly run at a's workers
            results = await asyncio.gather(*(ask(a if i % 2 else b, i % 3) for i in range(JOBS)))
            await asyncio.sleep(0.5)
            assert_each_job_once_and_books_balance(postgres_url, workers, askers, results, JOBS)
            for w in workers:
                await w.stop()

    asyncio.run(main())


def test_a_coordinator_stopping_mid_job_gives_it_to_another(tmp_path: Path, postgres_url: str) -> None:
    """The requester follows at B; the job runs at A's worker; A stops mid-stream: the job goes back
    with what streamed, B's worker resumes it, the requester's stream goes on, billed once."""
    asker = identity(30)

    async def main() -> None:
        async with coordinator(tmp_path, postgres_url, name="b") as b:
            stack = contextlib.AsyncExitStack()
            a = await stack.enter_async_context(coordinator(tmp_path, postgres_url, name="a"))
            first = await ScriptedWorker(identity(1), slow_s=0.4).start(a)
            body = {"model": MODEL.name, "prompt": "Once", "max_tokens": 16}
            async with httpx.AsyncClient(base_url=b, auth=SignedAuth(asker), timeout=90) as client:
                ask = asyncio.create_task(client.post("/v1/completions", json=body))
                await asyncio.wait_for(first.accepted.wait(), 30)
                second = await ScriptedWorker(identity(2)).start(b)
                while first.streamed < 2:
                    await asyncio.sleep(0.05)
                await stack.aclose()  # coordinator A stops, its worker's link with it
                r = await ask
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["choices"][0]["text"] == TEXT
            assert got["hearth"]["workers"] == [first.me.node_id, second.me.node_id]
            resume = second.offered[0].request.resume
            assert resume is not None and 2 <= len(resume.token_ids) < 8
            await asyncio.sleep(0.5)
            with ledger_of(postgres_url) as ledger:
                part = len(resume.token_ids)
                assert ledger.balance(first.me.node_id) == part * PRICE
                assert ledger.balance(second.me.node_id) == (8 - part + PROMPT_TOKENS) * PRICE
                assert ledger.audit() == [] and ledger.holds_of(asker.node_id) == []
            await first.stop()
            await second.stop()

    asyncio.run(main())
