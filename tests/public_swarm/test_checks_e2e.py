"""A spot-check of a real job by a real worker (issue 11): two `hearth contribute` processes running the
embedded model link to the coordinator (its serving coroutine in this process, real uvicorn and
WebSocket links, `random` fixed so that every job is checked); a greedy job served by one is scored
by the other (the engine's score op) and passes; the checked worker's standing counts it verified,
the checker is paid by the operator, the requester pays only its job, and the ledger balances."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

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


def test_a_real_job_is_checked_by_another_real_worker_and_passes(tmp_path: Path, models_home: Path) -> None:
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
                    r = await client.post("/v1/completions", json={
                        "model": MODEL, "prompt": "The three primary colours are", "max_tokens": 8, "temperature": 0})
                    assert r.status_code == 200, r.text
                    served_by = r.json()["hearth"]["workers"][0]
                    cost = r.json()["usage"]["cost_credits"]
                checker = (nodes - {served_by}).pop()
                with ledger_of(url) as ledger:
                    trust = Trust(ledger.engine, ledger)
                    start = time.monotonic()
                    while (s := trust.standing(served_by)) is None or s.verified + s.failed == 0:
                        assert time.monotonic() - start < 120, "the check was not decided"
                        await asyncio.sleep(0.3)
                    with ledger.engine.connect() as conn:
                        row = conn.execute(select(checks)).one()
                    assert (row.outcome, row.worker, row.verifier) == ("passed", served_by, checker), row.reason
                    assert s.verified == 1 and s.failed == 0
                    print(f"check of {served_by}'s job by {checker}: passed, {time.monotonic() - start:.1f} s "
                          "after the job ended")
                    await asyncio.sleep(0.5)
                    # the operator paid the (new, so escrowed) checker for the prompt and 8 scored tokens
                    assert ledger.balance(vesting_account(checker)) > 0
                    assert ledger.balance(me.node_id) == 10**6 - cost  # its welcome less its one job
                    assert ledger.holds_of(me.node_id) == [] and ledger.audit() == []

    asyncio.run(main())
