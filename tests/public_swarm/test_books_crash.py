"""Kill -9 a real `hearth coordinator` process in the middle of settlements, restart it on the same
database (SQLite, and PostgreSQL): every job ends, none is lost or charged twice, each hold is
closed by exactly one settlement, no hold dangles past its expiry, no balance goes negative and the
balances sum to the credits issued (issue 10).

Workers are the scripted ones of dispatch_live (a real WebSocket link, the real sans-IO
WorkerSession, real signed receipts, fixed tokens): the books do not need a real engine, and the
embedded model would make the many jobs here slow. The instant a coordinator dies between writing a
job done and settling it is simulated after the kill by that write (JobQueue.finish on a job the
dead process was running, as its last act), since a kill -9 hits that instant only by luck.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.job_rules import JobState
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.ledger.db import Ledger
from tests.public_swarm.books_kit import all_jobs, check_settled_once, no_balance_negative
from tests.public_swarm.coordinator_proc import coordinator
from tests.public_swarm.dispatch_kit import MODEL
from tests.public_swarm.dispatch_live import PIECES, PROMPT_TOKENS, ScriptedWorker, identity

pytestmark = pytest.mark.slow
REQUESTERS, PER_REQUESTER = 3, 8


async def submit_all(base: str) -> list[str]:
    async def one(who: int, i: int) -> str:
        body = {"model": MODEL.name, "prompt": f"Story {who}-{i}", "max_tokens": len(PIECES), "key": f"crash-{who}-{i:04d}"}
        async with httpx.AsyncClient(base_url=base, auth=SignedAuth(identity(40 + who)), timeout=30) as client:
            r = await client.post("/v1/jobs", json=body)
            assert r.status_code == 202, r.text
            return str(r.json()["id"])

    return list(await asyncio.gather(*(one(w, i) for w in range(REQUESTERS) for i in range(PER_REQUESTER))))


def counts(ledger: Ledger) -> dict[JobState, int]:
    return JobQueue(ledger.engine).counts()


async def crash_and_restart(home: Path, db: str) -> None:
    with Ledger.open(db, pool_size=2) as ledger:
        with coordinator(home, db) as first:
            workers = [await ScriptedWorker(identity(i + 1), max_jobs=2, slow_s=0.08).start(first.url) for i in range(2)]
            submitted = await submit_all(first.url)
            start = time.monotonic()
            while counts(ledger)[JobState.DONE] < 5:  # settlements under way: kill it now
                assert time.monotonic() - start < 60, counts(ledger)
                await asyncio.sleep(0.02)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            for w in workers:
                await w.stop()
        before = counts(ledger)
        running = [j for j in all_jobs(ledger) if j.state is JobState.RUNNING]
        assert before[JobState.QUEUED] + len(running) > 0, before  # killed mid-way, not after the end
        if running:  # the dead process's last write: this job done, its hold never settled
            victim, worker = running[0], running[0].worker_id or ""
            JobQueue(ledger.engine).finish(victim.id, worker, victim.text, victim.tokens, victim.token_ids, {
                "finish_reason": "length", "prompt_tokens": PROMPT_TOKENS, "finisher": worker})
            assert ledger.get_hold(victim.hold_id or "").state.value == "open"  # type: ignore[union-attr]
        no_balance_negative(ledger)
        with coordinator(home, db) as second:  # the same database, a new process (and port)
            workers = [await ScriptedWorker(identity(i + 1), max_jobs=2, slow_s=0.01).start(second.url)
                       for i in range(2)]
            start = time.monotonic()
            while (c := counts(ledger))[JobState.QUEUED] + c[JobState.RUNNING]:  # leases of the dead run out
                assert time.monotonic() - start < 120, c
                no_balance_negative(ledger)
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # the last settlements land
            for w in workers:
                await w.stop()
        found = check_settled_once(ledger, time.time())
        assert sorted(j.id for j in found) == sorted(submitted)
        assert all(j.state is JobState.DONE for j in found), [(j.id, j.state, j.error) for j in found]
        print("before the restart:", {s.value: n for s, n in before.items()}, "crashed mid-settlement:",
              bool(running))


def test_kill_9_mid_settlement_on_sqlite(tmp_path: Path) -> None:
    asyncio.run(crash_and_restart(tmp_path / "coord", f"sqlite:///{tmp_path / 'coordinator.db'}"))


def test_kill_9_mid_settlement_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    asyncio.run(crash_and_restart(tmp_path / "coord", postgres_url))
