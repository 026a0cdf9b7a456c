"""The coordinator's limits over real HTTP: a real coordinator (uvicorn on 127.0.0.1, the links,
the dispatcher) and real httpx clients from distinct loopback addresses (127.0.0.x)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hearth.identity import NodeIdentity
from hearth.pairing.signed import sign
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.coordinator.ratelimit_rules import GENEROUS, Limits, Rate
from tests.public_swarm.limits_kit import client, job_body, limited


def me(seed: int) -> NodeIdentity:
    return NodeIdentity(SigningKey(bytes([seed]) * 32))


def refused(answer: object, code: str = "rate_limited") -> int:
    """Asserts a 429 in hearth's error shape; its Retry-After."""
    import httpx

    assert isinstance(answer, httpx.Response)
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["code"] == code
    return int(answer.headers["retry-after"])


def test_an_address_past_its_burst_gets_429_others_do_not_and_it_recovers(tmp_path: Path) -> None:
    limits = Limits(per_address=Rate(1.0, 5), per_identity=GENEROUS.per_identity)

    async def scenario() -> None:
        async with limited(tmp_path, limits) as live, client(live.url) as a, client(live.url, "127.0.0.2") as b:
            assert [(await a.get("/v1/prices")).status_code for _ in range(5)] == [200] * 5
            wait = refused(await a.get("/v1/prices"))
            assert wait == 1
            assert (await b.get("/v1/prices")).status_code == 200  # another address is unaffected
            refused(await a.get("/v1/models"))  # every route, not one
            await asyncio.sleep(wait)
            assert (await a.get("/v1/prices")).status_code == 200  # back after Retry-After

    asyncio.run(scenario())


def test_an_identity_is_limited_after_its_signature_verifies_and_forgeries_drain_nobody(tmp_path: Path) -> None:
    limits = Limits(per_address=GENEROUS.per_address, per_identity=Rate(0.5, 3))
    x, y = me(1), me(2)

    async def scenario() -> None:
        async with (limited(tmp_path, limits) as live, client(live.url, identity=x) as cx,
                    client(live.url, identity=y) as cy, client(live.url) as raw):
            # 10 forged requests naming y's key: refused as forged (401), never counted against y
            for _ in range(10):
                headers = sign(x, "GET", "/v1/credits", b"")  # signed by x's key, claiming y's
                headers["x-hearth-key"] = sign(y, "GET", "/v1/credits", b"")["x-hearth-key"]
                assert (await raw.get("/v1/credits", headers=headers)).status_code == 401
            assert [(await cx.get("/v1/credits")).status_code for _ in range(3)] == [200] * 3
            wait = refused(await cx.get("/v1/credits"))
            assert wait == 2  # one token back every 2 s
            assert [(await cy.get("/v1/credits")).status_code for _ in range(3)] == [200] * 3  # same address
            assert (await raw.get("/v1/prices")).status_code == 200  # unsigned routes: the address's bucket only
            await asyncio.sleep(wait)
            assert (await cx.get("/v1/credits")).status_code == 200

    asyncio.run(scenario())


def test_malformed_oversized_and_upgrade_floods_are_bounded_before_anything_is_read(tmp_path: Path) -> None:
    limits = Limits(per_address=Rate(0.2, 4), per_identity=GENEROUS.per_identity)

    async def scenario() -> None:
        async with limited(tmp_path, limits) as live, client(live.url, "127.0.0.3") as c:
            big = b"x" * (400 * 1024)
            first = [(await c.post("/v1/jobs", content=big)).status_code for _ in range(2)]
            assert first == [413, 413]  # read up to the bound, refused
            assert (await c.post("/v1/jobs", content=b"{not json")).status_code == 400
            assert (await c.post("/v1/grants", content=b"{}")).status_code == 401  # unsigned
            wait = refused(await c.post("/v1/jobs", content=big))  # over the burst: not even read
            assert wait == 5
            refused(await c.post("/v1/jobs", content=b"{not json"))
            ws = live.url.replace("http://", "ws://") + "/v1/workers/link"
            with pytest.raises(InvalidStatus) as upgrade:
                async with connect(ws, local_addr=("127.0.0.3", 0)):
                    pass
            assert upgrade.value.response.status_code == 429
            assert upgrade.value.response.headers["Retry-After"] == "5"
            async with client(live.url, "127.0.0.4") as other:
                assert (await other.get("/v1/prices")).status_code == 200
            async with connect(ws, local_addr=("127.0.0.4", 0)) as link:  # another address still links
                assert "challenge" in str(await asyncio.wait_for(link.recv(), 10)).lower()
        with live.ledger.engine.connect() as conn:
            assert conn.execute(jobs.select()).first() is None

    asyncio.run(scenario())


def test_the_jobs_at_once_limit_refuses_one_more_and_writes_nothing(tmp_path: Path) -> None:
    limits = Limits(per_address=GENEROUS.per_address, per_identity=GENEROUS.per_identity, jobs_per_requester=2)
    x = me(3)

    async def scenario() -> None:
        async with limited(tmp_path, limits) as live, client(live.url, identity=x) as cx, client(live.url) as anon:
            first = [await cx.post("/v1/jobs", json=job_body(f"job-key-{i}")) for i in range(2)]
            assert [a.status_code for a in first] == [202, 202]
            holds = live.ledger.holds_of(x.node_id)
            balance = live.ledger.balance(x.node_id)
            third = await cx.post("/v1/jobs", json=job_body("job-key-2"))
            assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_jobs"
            assert "2 jobs queued or running" in third.json()["error"]["message"]
            chat = await cx.post("/v1/chat/completions", json={**job_body("x"), "stream": True} | {"key": None})
            assert chat.status_code == 429 and chat.json()["error"]["code"] == "too_many_jobs"
            assert live.ledger.holds_of(x.node_id) == holds and live.ledger.balance(x.node_id) == balance
            with live.ledger.engine.connect() as conn:
                assert len(conn.execute(jobs.select()).all()) == 2  # the refused wrote no row
            again = await cx.post("/v1/jobs", json=job_body("job-key-0"))  # a retried submit is no new job
            assert again.status_code in (200, 202) and again.json()["id"] == first[0].json()["id"]
            # the free tier counts per address: an unsigned requester has its own two
            assert [(await anon.post("/v1/jobs", json=job_body(f"free-key-{i}"))).status_code
                    for i in range(3)][-1] == 429
            assert (await cx.delete(f"/v1/jobs/{first[1].json()['id']}")).status_code == 200
            assert (await cx.post("/v1/jobs", json=job_body("job-key-2"))).status_code == 202  # room again
        assert live.ledger.audit() == []

    asyncio.run(scenario())


def test_no_worker_is_offered_more_jobs_than_the_cap(tmp_path: Path) -> None:
    """A scripted worker (dispatch_live.ScriptedWorker) declares max_jobs=6 in its Hello: the real
    `hearth contribute --max-jobs 6` says the same on the link, but would load a model first; the
    chaos test checks the cap with real workers. The coordinator publishes the capped value."""
    from hearth.public_swarm.coordinator.job_tables import links as links_table
    from tests.public_swarm.dispatch_live import ScriptedWorker

    limits = Limits(jobs_per_worker=2)

    async def scenario() -> None:
        async with limited(tmp_path, limits, elsewhere=False) as live:
            worker = await ScriptedWorker(me(9), max_jobs=6, slow_s=0.5).start(live.url)
            try:
                async with client(live.url, identity=me(4)) as c:
                    for i in range(4):
                        assert (await c.post("/v1/jobs", json=job_body(f"cap-key-{i}", 8))).status_code == 202
                deadline = time.monotonic() + 10
                most = 0
                while time.monotonic() < deadline:
                    with live.ledger.engine.connect() as conn:
                        running = conn.execute(jobs.select().where(jobs.c.state == "running")).all()
                        row = conn.execute(links_table.select()).first()
                    most = max(most, len(running))
                    if row is not None and most == 2:
                        break
                    await asyncio.sleep(0.1)
                assert most == 2 and row is not None and row.max_jobs == 2
                await asyncio.sleep(1.0)
                assert len(worker.offered) <= 2 + len(worker.finished)
            finally:
                await worker.stop()

    asyncio.run(scenario())
