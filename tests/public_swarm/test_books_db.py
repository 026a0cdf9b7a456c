"""The books sweep on a real database (SQLite and PostgreSQL): a job a coordinator made final and
died before settling is settled once, exactly as the dispatcher would have; an unfinished job whose
hold is gone is dropped; the books stay balanced."""

from __future__ import annotations

from sqlalchemy import func, select

from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator.books import Books
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import JobState
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.workers import upgrade
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.models import entries
from hearth.public_swarm.ledger.rules import HoldState
from tests.public_swarm.dispatch_kit import chat
from tests.public_swarm.jobs_kit import Clock, node

SPEC = JobSpec(chat(max_tokens=8), "chat", "m", 599, 40)
DIGEST = "ab" * 32
HELD = (40 + 8) * 599


def open_books(url: str, clock: Clock) -> tuple[Ledger, JobQueue, Books]:
    ledger = Ledger.open(url, clock=clock, pool_size=2)
    upgrade(ledger.engine)
    queue = JobQueue(ledger.engine, clock=clock)
    return ledger, queue, Books(ledger, queue)


def closing_keys(ledger: Ledger, hold_id: str) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count(func.distinct(entries.c.op_key)))
                                .where(entries.c.hold_id == hold_id, entries.c.kind != "hold")).scalar_one())


def test_a_done_job_left_unsettled_is_settled_once_by_the_sweep(ledger_url: str) -> None:
    clock = Clock()
    ledger, queue, books = open_books(ledger_url, clock)
    try:
        ledger.grant(node(1), 10**6, "grant-one")
        jobs = []
        for i in range(3):
            hold = ledger.hold(node(1), HELD, D.hold_key(node(1), f"request-{i}"), D.HOLD_TTL_S)
            jobs.append(queue.submit(node(1), f"request-{i}", DIGEST, SPEC.to_json(), 8, hold.id))
        for _ in jobs:
            assert queue.claim(node(2), [DIGEST]) is not None
        done = queue.finish(jobs[0].id, node(2), "abc", 3, [1, 2, 3], {"prompt_tokens": 7, "finisher": node(2)})
        failed = queue.fail(jobs[1].id, node(2), "cannot", retry=False)
        books.close(failed)  # its coordinator settled this one before dying; the sweep must not repeat it
        # jobs[2] is still running: not the sweep's
        clock.now += D.HOLD_TTL_S + 1  # and the coordinator stayed down past the holds' expiry
        swept = books.sweep()
        assert swept.settled == (done.id,) and swept.dropped == (jobs[2].id,) and swept.expired == 1
        assert ledger.balance(node(2)) == (3 + 7) * 599
        assert ledger.balance(node(1)) == 10**6 - (3 + 7) * 599
        assert [ledger.get_hold(j.hold_id or "").state for j in jobs] == [  # type: ignore[union-attr]
            HoldState.SETTLED, HoldState.SETTLED, HoldState.EXPIRED]
        assert [closing_keys(ledger, j.hold_id or "") for j in jobs] == [1, 1, 1]
        assert queue.get(jobs[2].id).state is JobState.CANCELLED  # type: ignore[union-attr]
        again = books.sweep()
        assert again.settled == again.dropped == () and again.expired == 0
        books.close(done)  # the dispatcher's own settle, late: replayed, not repeated
        assert ledger.balance(node(2)) == (3 + 7) * 599 and ledger.audit() == []
        assert sum(ledger.balances().values()) == 0
    finally:
        ledger.close()
