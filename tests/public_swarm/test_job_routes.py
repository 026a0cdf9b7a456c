"""`/v1/jobs` in process (SQLite and PostgreSQL; workers listed without sockets, see jobs_http_kit):
submit, status with queue position, list, cancel; anonymous requesters see only their address's
jobs and pay from its free allowance; another's job is a 404 like an unknown one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.job_rules import JobNotFound
from hearth.public_swarm.coordinator.jobs_client import job_submit
from tests.public_swarm.dispatch_kit import DIGEST, MODEL, PRICE
from tests.public_swarm.jobs_http_kit import books
from tests.public_swarm.jobs_kit import snapshot

CHAT = {"model": MODEL.name, "messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 16}


def test_anonymous_submit_status_list_and_cancel(ledger_url: str) -> None:
    async def go() -> None:
        with books(ledger_url, tokens_per_day=10_000) as b:
            async with b.anonymous("192.0.2.10") as me, b.anonymous("2001:db8::7") as other:
                first = await me.post("/v1/jobs", json=CHAT)
                assert first.status_code == 202, first.text
                job = first.json()
                assert (job["state"], job["model"], job["digest"], job["position"]) == ("queued", MODEL.name, DIGEST, 0)
                assert job["result"] is None and job["error"] is None
                assert job["estimated_wait_s"] is None  # no done job of the model yet: unknown
                second = (await me.post("/v1/jobs", json={**CHAT, "prompt": "Once", "messages": None})).json()
                assert second["position"] == 1
                assert (await me.get(f"/v1/jobs/{second['id']}")).json()["position"] == 1
                listed = (await me.get("/v1/jobs")).json()["data"]
                assert [j["id"] for j in listed] == [second["id"], job["id"]]
                assert (await other.get("/v1/jobs")).json()["data"] == []  # only its own address's jobs
                for method in ("GET", "DELETE"):
                    r = await other.request(method, f"/v1/jobs/{job['id']}")
                    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
                gone = await me.delete(f"/v1/jobs/{job['id']}")
                assert gone.status_code == 200 and gone.json()["state"] == "cancelled"
                assert (await me.get(f"/v1/jobs/{second['id']}")).json()["position"] == 0
                assert [j["id"] for j in (await me.get("/v1/jobs?state=cancelled")).json()["data"]] == [job["id"]]
                left, _ = b.allowance.left("192.0.2.10")
                assert left < 10_000  # the free allowance paid (the cancelled job's unused part came back)

    asyncio.run(go())


def test_the_free_allowance_runs_out_with_a_429_that_says_when(ledger_url: str) -> None:
    async def go() -> None:
        with books(ledger_url, tokens_per_day=200) as b:
            async with b.anonymous("2001:db8:1:2::1") as one, b.anonymous("2001:db8:1:2::2") as same_64:
                assert (await one.post("/v1/jobs", json={**CHAT, "max_tokens": 100})).status_code == 202
                before = snapshot(b.queue)
                r = await same_64.post("/v1/jobs", json={**CHAT, "max_tokens": 100})
                assert r.status_code == 429, r.text
                assert r.json()["error"]["code"] == "free_allowance_used"
                assert "left" in r.json()["error"]["message"] and int(r.headers["retry-after"]) >= 1
                assert snapshot(b.queue) == before

    asyncio.run(go())


def test_a_signed_requester_pays_with_credits_and_sees_its_own_jobs(ledger_url: str, tmp_path: Path) -> None:
    me, other = NodeIdentity.load_or_create(tmp_path / "me"), NodeIdentity.load_or_create(tmp_path / "other")

    async def go() -> None:
        with books(ledger_url) as b:
            async with b.signed(me) as mine, b.signed(other) as theirs, b.anonymous("192.0.2.99") as anon:
                job = await mine.submit(job_submit(MODEL.name, "Hello", max_tokens=8, key="my-key-0001"))
                again = await mine.submit(job_submit(MODEL.name, "Hello", max_tokens=8, key="my-key-0001"))
                assert again.id == job.id and job.state == "queued"
                assert b.ledger.holds_of(me.node_id)  # billed: a hold of the job's maximum cost
                assert [j.id for j in (await mine.list()).data] == [job.id]
                assert (await theirs.list()).data == []
                assert (await anon.get("/v1/jobs")).json()["data"] == []  # same address, not the signer's jobs
                with pytest.raises(JobNotFound):
                    await theirs.status(job.id)
                assert (await mine.cancel(job.id)).state == "cancelled"

    asyncio.run(go())


def test_price_ceiling_and_unknown_model_are_refused_and_write_nothing(ledger_url: str) -> None:
    async def go() -> None:
        with books(ledger_url) as b:
            async with b.anonymous() as me:
                before = snapshot(b.queue)
                r = await me.post("/v1/jobs", json=CHAT, headers={"X-Hearth-Max-Price": str(PRICE - 1)})
                assert r.status_code == 402 and r.json()["error"]["code"] == "price_above_ceiling"
                r = await me.post("/v1/jobs", json={**CHAT, "model": "no-such-model"})
                assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_served"
                r = await me.post("/v1/jobs", json=CHAT, headers={"X-Hearth-Max-Price": "lots"})
                assert r.status_code == 400
                assert snapshot(b.queue) == before and b.allowance.left("192.0.2.10")[0] == 20_000

    asyncio.run(go())
