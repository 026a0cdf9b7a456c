"""A spot-check of a real job by a real worker (issue 11): two `hearth contribute` processes running the
embedded model link to the coordinator (its serving coroutine in this process, real uvicorn and
WebSocket links, `random` fixed so that every job is checked); a greedy job served by one is scored
by the other (the engine's score op) and passes, and so does a sampled job, re-run by the other
with the seed the coordinator gave it (both workers name the same sampler); the checked worker's standing counts it verified,
the checker is paid by the operator, the requester pays only its job, and the ledger balances."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hearth.identity import NodeIdentity
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.job_tables import checks
from hearth.public_swarm.coordinator.trust import Trust
from hearth.public_swarm.ledger.rules import vesting_account
from tests.public_swarm.dispatch_live import coordinator, ledger_of
from tests.public_swarm.worker_jobs_kit import contributor

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"


def decided(ledger: Any) -> list[Any]:
    """The checks decided so far, oldest first."""
    with ledger.engine.connect() as conn:
        return list(conn.execute(select(checks).where(checks.c.outcome != "pending").order_by(checks.c.created_at)))


def test_real_jobs_are_checked_by_another_real_worker_and_pass(tmp_path: Path, models_home: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    models = models_home / "models"
    me = NodeIdentity.load_or_create(tmp_path / "asker")

    async def main() -> None:
        async with coordinator(tmp_path, url, checks=True, random=lambda: 0.0) as base:
            with contributor(tmp_path / "w1", base, models, "--model", MODEL, "--radius", "machine"), \
                    contributor(tmp_path / "w2", base, models, "--model", MODEL, "--radius", "machine"):
                nodes = {NodeIdentity.load_or_create(tmp_path / n).node_id for n in ("w1", "w2")}
                async with httpx.AsyncClient(base_url=base, auth=SignedAuth(me), timeout=300) as client:
                    start = time.monotonic()
                    while [m.get("workers") for m in (await client.get("/v1/models")).json()["data"]
                           if m["id"] == MODEL] != [2]:
                        assert time.monotonic() - start < 240, "the workers did not link"
                        await asyncio.sleep(0.5)
                    served, cost = [], 0
                    for temperature in (0, 0.9):  # greedy: a scored check; sampled: a same-seed re-run
                        r = await client.post("/v1/completions", json={
                            "model": MODEL, "prompt": "The three primary colours are", "max_tokens": 8,
                            "temperature": temperature})
                        assert r.status_code == 200, r.text
                        served.append(r.json()["hearth"]["workers"][0])
                        cost += r.json()["usage"]["cost_credits"]
                with ledger_of(url) as ledger:
                    start = time.monotonic()
                    while len(rows := decided(ledger)) < 2:
                        assert time.monotonic() - start < 180, "the checks were not decided"
                        await asyncio.sleep(0.3)
                    for row, worker in zip(rows, served, strict=True):
                        assert (row.outcome, row.worker, row.verifier) == ("passed", worker, (nodes - {worker}).pop()), \
                            row.reason
                    trust = Trust(ledger.engine, ledger)
                    assert sum(getattr(trust.standing(w), "verified", 0) for w in set(served)) == 2
                    print(f"checks of {served} passed, {time.monotonic() - start:.1f} s after the jobs ended")
                    await asyncio.sleep(0.5)
                    # the operator paid the (new, so escrowed) checkers for the prompts and scored tokens
                    assert sum(ledger.balance(vesting_account(n)) for n in nodes) > 0
                    assert ledger.balance(me.node_id) == 10**6 - cost  # its welcome less its two jobs
                    assert ledger.holds_of(me.node_id) == [] and ledger.audit() == []

    asyncio.run(main())
