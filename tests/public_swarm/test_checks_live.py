"""Spot-checks, canaries and verified-only jobs live (issue 11): a real coordinator (uvicorn, real
WebSocket links, the dispatcher with `Trust` and the `Verifier`) and scripted workers over real
sockets. The cheater is scripted because no real worker cheats (dispatch_live.ScriptedWorker's
`cheat`: other token ids than the model's); the scripted checker scores like an honest copy of the
model whose greedy output is dispatch_live.PIECES. The ledger balances at the end of each."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.job_rules import JobState
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.trust import Trust
from hearth.public_swarm.coordinator.trust_rules import TrustState
from hearth.public_swarm.coordinator.verifier_rules import CHECKS_ACCOUNT, job_seed
from hearth.public_swarm.ledger.rules import vesting_account
from tests.public_swarm.dispatch_kit import MODEL, PRICE
from tests.public_swarm.dispatch_live import (
    PROMPT_TOKENS,
    TEXT,
    ScriptedWorker,
    coordinator,
    identity,
    ledger_of,
    wait_until,
)

pytestmark = pytest.mark.slow
ASKER = identity(9)


def body(temperature: float = 0.0) -> dict[str, Any]:
    return {"model": MODEL.name, "messages": [{"role": "user", "content": "Why is the sky blue?"}],
            "max_tokens": 16, "temperature": temperature}


async def ask(base: str, temperature: float = 0.0, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=60) as client:
        r = await client.post("/v1/chat/completions", json=body(temperature), headers=headers or {})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out


def standing(url: str, node_id: str) -> Any:
    with ledger_of(url) as ledger:
        return Trust(ledger.engine, ledger).standing(node_id)


def checks_of(url: str) -> list[Any]:
    with JobQueue.open(url) as q:
        return [j for j in q.list_for(CHECKS_ACCOUNT, limit=100)]


def test_a_cheater_is_caught_forfeits_its_escrow_and_is_quarantined(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    async def main() -> None:
        async with coordinator(tmp_path, url, checks=True, random=lambda: 0.0) as base:  # check every job
            cheater = await ScriptedWorker(identity(1), cheat=True).start(base)
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-checks-1")
            for _ in range(3):
                assert (await ask(base))["choices"][0]["message"]["content"] == TEXT
            await wait_until("3 checks queued", lambda: len(checks_of(url)) == 3)
            with ledger_of(url) as ledger:  # its earnings sit in escrow while it is new
                assert ledger.balance(cheater.me.node_id) == 0
                assert ledger.balance(vesting_account(cheater.me.node_id)) == 3 * (PROMPT_TOKENS + 8) * PRICE
            checker = await ScriptedWorker(identity(2)).start(base)  # another owner: may check it
            await wait_until("the cheater quarantined", lambda: getattr(
                standing(url, cheater.me.node_id), "state", None) is TrustState.QUARANTINED)
            s = standing(url, cheater.me.node_id)
            assert s.failed == 3 and s.verified == 0 and not s.may_serve(time.time())
            assert len(checker.checked) == 3 and all(o.check and o.request.resume is None for o in checker.checked)
            offered = len(cheater.offered)
            assert (await ask(base))["hearth"]["workers"] == [checker.me.node_id]  # the cheater is offered nothing
            await asyncio.sleep(0.5)
            assert len(cheater.offered) == offered
            with ledger_of(url) as ledger:
                assert ledger.balance(vesting_account(cheater.me.node_id)) == 0  # forfeited
                assert ledger.balance(cheater.me.node_id) == 0
                # the checker was paid by the operator for each check: prompt + 8 scored tokens
                earned = ledger.balance(checker.me.node_id) + ledger.balance(vesting_account(checker.me.node_id))
                assert earned == 3 * (PROMPT_TOKENS + 8) * PRICE + (PROMPT_TOKENS + 8) * PRICE
                assert ledger.audit() == []
            with JobQueue.open(url) as q:
                assert all(j.purpose == "user" for j in q.list_for(ASKER.node_id))
                assert q.counts()[JobState.DONE] == 4  # checks are not counted as requesters' jobs
            for w in (cheater, checker):
                await w.stop()

    asyncio.run(main())


def test_an_honest_worker_passes_a_canary_and_its_check(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    async def main() -> None:
        async with coordinator(tmp_path, url, checks=True, random=lambda: 0.0) as base:
            honest = await ScriptedWorker(identity(1)).start(base)
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-checks-2")
            answer = await ask(base, temperature=0.8)  # sampled: a canary for its worker instead
            cost = answer["usage"]["cost_credits"]
            await wait_until("the canary served", lambda: len(honest.finished) == 2)
            canary = honest.offered[1]
            assert canary.check is None and canary.request.sampling.temperature == 0
            assert canary.request.max_tokens == 16 and canary.request.messages is not None
            checker = await ScriptedWorker(identity(2)).start(base)
            await wait_until("the canary checked", lambda: getattr(
                standing(url, honest.me.node_id), "verified", 0) == 1)
            assert standing(url, honest.me.node_id).failed == 0 and len(checker.checked) == 1
            with ledger_of(url) as ledger:
                # the requester paid its job only; the operator paid the canary and the check
                assert ledger.balance(ASKER.node_id) == 2 * 10**6 - cost
                assert ledger.audit() == []
            for w in (honest, checker):
                await w.stop()

    asyncio.run(main())


def test_a_sampled_job_is_re_run_with_its_seed_an_honest_worker_passes_a_cheater_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    async def main() -> None:
        async with coordinator(tmp_path, url, checks=True, random=lambda: 0.0) as base:
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-checks-5")
            honest = await ScriptedWorker(identity(1), sampler="s1").start(base)
            job_id = (await ask(base, temperature=0.8))["id"].removeprefix("chatcmpl-")
            await wait_until("the check queued", lambda: len(checks_of(url)) == 1)
            await honest.stop()
            cheater = await ScriptedWorker(identity(3), sampler="s1", cheat=True).start(base)
            await ask(base, temperature=0.8)
            await wait_until("both checks queued", lambda: len(checks_of(url)) == 2)
            assert all(j.purpose == "check" for j in checks_of(url))  # same-seed re-runs, no canaries
            checker = await ScriptedWorker(identity(2), sampler="s1").start(base)
            await wait_until("both decided", lambda: getattr(
                standing(url, cheater.me.node_id), "failed", 0) == 1 and getattr(
                standing(url, honest.me.node_id), "verified", 0) == 1)
            assert standing(url, honest.me.node_id).failed == 0 and standing(url, cheater.me.node_id).verified == 0
            served = [o.request.sampling.seed for o in honest.offered + cheater.offered if o.check is None]
            assert served == [job_seed(o.job_id) for o in honest.offered + cheater.offered if o.check is None]
            assert honest.offered[0].job_id == job_id  # the coordinator seeded the job by its id
            replays = [c for c in checker.checked + cheater.checked]  # the cheater may have checked the honest job
            assert len(replays) == 2 and all(c.check and c.check.replay for c in replays)
            assert all(c.request.sampling.temperature == 0.8 for c in replays)
            assert sorted(c.request.sampling.seed or 0 for c in replays) == sorted(s or 0 for s in served)
            with ledger_of(url) as ledger:
                assert ledger.audit() == []
            for w in (cheater, checker):
                await w.stop()

    asyncio.run(main())


def test_a_checker_of_another_sampler_proves_nothing_and_a_canary_follows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    async def main() -> None:
        async with coordinator(tmp_path, url, checks=True, random=lambda: 0.0) as base:
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-checks-6")
            honest = await ScriptedWorker(identity(1), sampler="s1").start(base)
            await ask(base, temperature=0.8)
            await wait_until("the check queued", lambda: len(checks_of(url)) == 1)
            checker = await ScriptedWorker(identity(2), sampler="s2").start(base)
            await wait_until("the canary served and checked", lambda: getattr(
                standing(url, honest.me.node_id), "verified", 0) == 1)
            replay, canary = checker.checked[0], honest.offered[1]
            assert replay.check is not None and replay.check.replay
            assert canary.check is None and canary.request.sampling.temperature == 0
            outcomes = sorted(str((j.result or {}).get("outcome")) for j in checks_of(url) if j.purpose == "check")
            assert outcomes == ["inconclusive", "passed"], outcomes  # the replay, then the canary's check
            assert standing(url, honest.me.node_id).failed == 0
            with ledger_of(url) as ledger:
                assert ledger.audit() == []
            for w in (honest, checker):
                await w.stop()

    asyncio.run(main())


def test_a_verified_only_job_waits_for_a_trusted_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    reference = identity(3)

    async def main() -> None:
        async with coordinator(tmp_path, url, checks=True, references=(reference.node_id,),
                               random=lambda: 0.99) as base:
            new = await ScriptedWorker(identity(1)).start(base)
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-checks-3")
            waiting = asyncio.create_task(ask(base, headers={"X-Hearth-Verified-Only": "1"}))
            await asyncio.sleep(1.5)
            assert not waiting.done() and new.offered == []
            trusted = await ScriptedWorker(reference).start(base)
            answer = await asyncio.wait_for(waiting, 30)
            assert answer["hearth"]["workers"] == [reference.node_id] and new.offered == []
            assert (await ask(base))["choices"][0]["message"]["content"] == TEXT  # others may take plain jobs
            async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=60) as client:
                bad = await client.post("/v1/chat/completions", json=body(), headers={"X-Hearth-Verified-Only": "y"})
                assert bad.status_code == 400
            with ledger_of(url) as ledger:
                # a reference is never escrowed (and, ranked first, it took the plain job too)
                assert ledger.balance(reference.node_id) == len(trusted.finished) * (PROMPT_TOKENS + 8) * PRICE
                assert ledger.balance(vesting_account(reference.node_id)) == 0
                assert ledger.audit() == []
            for w in (new, trusted):
                await w.stop()

    asyncio.run(main())


def test_a_receipt_that_does_not_verify_counts_as_a_failed_check(tmp_path: Path) -> None:
    """The protocol closes the liar's link (CloseCode.RECEIPT_REFUSED); the links report it to Trust as
    a receipt mismatch, and its job resumes on an honest worker."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    async def main() -> None:
        async with coordinator(tmp_path, url, checks=True, random=lambda: 0.99) as base:
            liar = await ScriptedWorker(identity(1), bad_receipt=True).start(base)
            with ledger_of(url) as ledger:
                ledger.grant(ASKER.node_id, 10**6, "grant-checks-4")
            asking = asyncio.create_task(ask(base))
            await wait_until("the liar suspected", lambda: getattr(standing(url, liar.me.node_id), "failed", 0) >= 1)
            honest = await ScriptedWorker(identity(2)).start(base)
            answer = await asyncio.wait_for(asking, 30)
            assert answer["choices"][0]["message"]["content"] == TEXT
            assert len(honest.finished) == 1  # it resumed after the 8 tokens the liar streamed
            with ledger_of(url) as ledger:
                assert ledger.audit() == []
            for w in (liar, honest):
                await w.stop()

    asyncio.run(main())
