"""Retention on a real database (SQLite and PostgreSQL): a finished job's text goes when it is
delivered or after the TTL, its prompt and token ids after the grace period, and all of it waits
while a spot-check of the job is pending; what the books and audit read (state, counts, parts, result, end time) is never
touched, the books still close from the forgotten row, and a fetched `/v1/jobs` result is
returned once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import insert, select, update

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator import books_rules as B
from hearth.public_swarm.coordinator.dispatch import ended
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import JobState
from hearth.public_swarm.coordinator.job_tables import checks, jobs
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.jobs_client import job_submit
from hearth.public_swarm.coordinator.retention import Retention
from hearth.public_swarm.coordinator.retention_rules import Policy
from tests.public_swarm.dispatch_kit import MODEL, chat
from tests.public_swarm.jobs_http_kit import books
from tests.public_swarm.jobs_kit import Clock, digest, node

D = digest("model")
W = node(7)
SECRET = "my very secret question"
ANSWER = "a very private answer"
KEPT = ("state", "tokens", "parts", "result", "updated_at", "hold_id", "max_tokens", "worker_id", "attempts")


def spec(text: str) -> dict[str, Any]:
    return JobSpec(chat(text, 8), "chat", "m", 599, 40, "203.0.113.5").to_json()


def finished(q: JobQueue, key: str, *, fail: bool = False) -> str:
    job = q.submit(node(1), key, D, spec(SECRET + key), 8, None)
    assert q.claim(W, [D]) is not None
    if fail:
        q.progress(job.id, W, ANSWER, 3, [1, 2, 3])
        return q.fail(job.id, W, "gave up").id
    return q.finish(job.id, W, ANSWER, 3, [1, 2, 3], {"finish_reason": "stop", "prompt_tokens": 9,
                                                      "finisher": W, "receipt": "r", "worker_key": "k"}).id


def row(q: JobQueue, job_id: str) -> Any:
    with q.engine.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).one()


def test_delivery_grace_and_ttl(ledger_url: str) -> None:
    clock = Clock()
    with JobQueue.open(ledger_url, clock=clock) as q:
        delivered, checked, failed, unfetched = (finished(q, k, fail=k == "key-fail-03") for k in (
            "key-deli-01", "key-chec-02", "key-fail-03", "key-unfe-04"))
        with q.engine.begin() as conn:
            conn.execute(insert(checks).values(id="check-1", job_id=checked, worker=W, outcome="pending",
                                               created_at=clock.now))
        before = {j: row(q, j) for j in (delivered, checked, failed, unfetched)}
        closing = {j: B.closing(q.get(j)) for j in before}  # type: ignore[arg-type]
        ends = {j: ended(q.get(j)) for j in before}  # type: ignore[arg-type]
        keep = Retention(q, Policy(grace_s=600, ttl_s=86_400), every_s=0)

        assert keep.delivered(delivered) and row(q, delivered).text == ""
        assert SECRET in row(q, delivered).request and row(q, delivered).token_ids == "[1,2,3]"  # grace
        assert keep.delivered(checked) and row(q, checked).text == ANSWER  # its check compares the text
        assert not keep.delivered(failed)  # a failed job's text is never shown: nothing was delivered
        clock.now += 599
        assert keep.sweep() == 0
        clock.now += 1
        assert keep.sweep() == 3 and keep.sweep() == 0
        assert row(q, checked).text == ANSWER and SECRET in row(q, checked).request  # its check is pending
        clock.now += 60
        with q.engine.begin() as conn:  # the check is decided (as Trust.decide writes it): now it goes
            conn.execute(update(checks).where(checks.c.id == "check-1").values(outcome="passed",
                                                                               decided_at=clock.now))
        assert keep.sweep() == 1 and keep.sweep() == 0
        for j in (delivered, checked, failed, unfetched):
            r = row(q, j)
            assert SECRET not in r.request and "203.0.113" not in r.request and r.token_ids == "[]"
            assert all(getattr(r, c) == getattr(before[j], c) for c in KEPT)
            late = B.closing(q.get(j))  # type: ignore[arg-type]
            # a late close (the books sweep) pays the same; the free tier's address is gone (only the
            # process that ended a free job closes it, at its end)
            assert (late.paid, late.hold_id, late.key, late.free_address) == (
                closing[j].paid, closing[j].hold_id, closing[j].key, None)
            assert ended(q.get(j)) == ends[j]  # type: ignore[arg-type]
        assert [row(q, j).text for j in (delivered, checked, failed, unfetched)] == ["", "", "", ANSWER]
        clock.now += 86_400 - 660
        assert Retention(q, Policy(600, 86_400), every_s=0).sweep() == 1  # a restarted process: once more
        assert row(q, unfetched).text == "" and row(q, unfetched).state == JobState.DONE.value


def test_sweep_reads_the_database_at_most_every_few_seconds(ledger_url: str) -> None:
    clock = Clock()
    with JobQueue.open(ledger_url, clock=clock) as q:
        job = finished(q, "key-once-01")
        keep = Retention(q, Policy(grace_s=0, ttl_s=0), every_s=10)
        clock.now += 1
        assert keep.sweep() == 1 and json.loads(row(q, job).request)["forgotten"] is True
        job2 = finished(q, "key-once-02")
        clock.now += 5
        assert keep.sweep() == 0 and row(q, job2).text == ANSWER
        clock.now += 5
        assert keep.sweep() == 1 and row(q, job2).text == ""


def test_a_fetched_async_result_is_returned_once(ledger_url: str, tmp_path: Any) -> None:
    me = NodeIdentity.load_or_create(tmp_path / "me")

    async def go() -> None:
        with books(ledger_url) as b:
            async with b.signed(me) as mine:
                job = await mine.submit(job_submit(MODEL.name, SECRET, max_tokens=8, key="fetch-key-01"))
                assert (await mine.status(job.id)).state == "queued"  # not final: nothing forgotten
                assert b.queue.claim(W, [MODEL.digest]) is not None
                b.queue.finish(job.id, W, ANSWER, 3, [1, 2, 3], {"finish_reason": "stop", "prompt_tokens": 9,
                                                                  "finisher": W})
                first = await mine.status(job.id)
                again = await mine.status(job.id)
        assert first.result is not None and first.result.text == ANSWER
        assert again.result is not None and again.result.text == "" and again.result.usage == first.result.usage
        assert first.result.gone is None and again.result.gone == "fetched"
        assert SECRET in b.queue.get(job.id).request["request"]["messages"][0]["content"]  # type: ignore[union-attr]

    asyncio.run(go())
