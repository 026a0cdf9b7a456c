"""Two `hearth coordinator` PROCESSES on one real PostgreSQL serve one swarm (issue 10: "two
coordinator processes on one PostgreSQL serve one swarm without giving a job to two workers").
test_dispatch_pg checks the same with two app instances in one process; this one shares nothing but
the database. Workers are scripted (dispatch_live: the real link protocol, real signed receipts, fixed
text): the books and the dispatch are under test here, not the engine, and 3 real engines would not fit
beside the rest of the suite on 2 cores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from hearth.pairing.signed import SignedAuth
from tests.public_swarm.coordinator_proc import coordinator
from tests.public_swarm.dispatch_kit import MODEL
from tests.public_swarm.dispatch_live import ScriptedWorker, assert_each_job_once_and_books_balance, identity

pytestmark = pytest.mark.slow
JOBS = 12


def test_two_coordinator_processes_on_one_postgresql_never_give_one_job_to_two_workers(
        tmp_path: Path, postgres_url: str) -> None:
    askers = [identity(40 + i) for i in range(3)]

    async def ask(base: str, who: int) -> dict[str, object]:
        body = {"model": MODEL.name, "prompt": "Once upon a time", "max_tokens": 16}
        async with httpx.AsyncClient(base_url=base, auth=SignedAuth(askers[who]), timeout=120) as client:
            r = await client.post("/v1/completions", json=body)
            assert r.status_code == 200, r.text
            return dict(r.json())

    with coordinator(tmp_path / "a", postgres_url) as a, coordinator(tmp_path / "b", postgres_url) as b:
        assert a.proc.pid != b.proc.pid

        async def main() -> None:
            workers = [await ScriptedWorker(identity(i + 1), max_jobs=2, slow_s=0.01).start(base)
                       for i, base in enumerate([a.url, a.url, b.url])]
            results = await asyncio.gather(*(ask(a.url if i % 2 else b.url, i % 3) for i in range(JOBS)))
            await asyncio.sleep(1.0)
            assert_each_job_once_and_books_balance(postgres_url, workers, askers, results, JOBS)
            for w in workers:
                await w.stop()

        asyncio.run(main())
