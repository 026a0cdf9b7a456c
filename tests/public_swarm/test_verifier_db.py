"""The Verifier on a real database (SQLite and PostgreSQL) with the real `Trust` and ledger (issue 11):
a done job gets its check once however often it is reported; an answer is paid and decided once; a
check nobody of another owner can take ends 'inconclusive' after its wait, changing nothing else;
check jobs never bill a requester. The ledger audit is empty after each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from hearth.public_swarm.coordinator import verifier_rules as V
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import JobState
from hearth.public_swarm.coordinator.job_tables import checks
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.trust import Trust
from hearth.public_swarm.coordinator.verifier import Verifier
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.rules import vesting_account
from tests.public_swarm.dispatch_kit import chat
from tests.public_swarm.jobs_kit import Clock, digest, node

W1, W2 = node(1), node(2)
D = digest("a")


@dataclass
class Kit:
    ledger: Ledger
    queue: JobQueue
    trust: Trust
    verifier: Verifier
    clock: Clock


@pytest.fixture
def kit(ledger_url: str) -> Iterator[Kit]:
    clock = Clock()
    ledger = Ledger.open(ledger_url, clock=clock)
    queue = JobQueue.open(ledger_url, clock=clock)
    trust = Trust(ledger.engine, ledger, clock=clock)
    try:
        yield Kit(ledger, queue, trust, Verifier(queue, ledger, trust, random=lambda: 0.0, clock=clock), clock)
    finally:
        queue.close()
        ledger.close()


def finished_job(k: Kit, worker: str = W1) -> str:
    k.trust.seen(worker, "192.0.2.7")
    spec = JobSpec(chat(), "chat", "m", 599, 40)
    job = k.queue.submit("alice", "key-user-1", D, spec.to_json(), 16)
    assert k.queue.claim(worker, [D], owner="192.0.2.0/24") is not None
    done = k.queue.finish(job.id, worker, "Hi!", 2, [5, 6], {"finisher": worker, "prompt_tokens": 9})
    return done.id


def outcome(k: Kit, check_id: str) -> str:
    with k.queue.engine.connect() as conn:
        return str(conn.execute(select(checks.c.outcome).where(checks.c.id == check_id)).scalar_one())


def test_a_check_is_made_once_answered_paid_and_decided_once(kit: Kit) -> None:
    k = kit
    job = k.queue.get(finished_job(k))
    assert job is not None
    assert k.verifier.ended(job).kind == "check" and k.verifier.ended(job).kind == "check"
    [check] = k.queue.list_for(V.CHECKS_ACCOUNT)  # reported twice, queued once
    assert check.parent == job.id and check.avoid == (W1,) and check.avoid_owner == "192.0.2.0/24"
    k.trust.seen(W2, "198.51.100.9")
    assert k.queue.claim(W1, [D], owner="192.0.2.0/24") is None  # never to the checked worker
    running = k.queue.claim(W2, [D], owner="198.51.100.0/24")
    assert running is not None and running.id == check.id
    verdict = k.verifier.checked(running, W2, 9, [0, 0], [0.0, 0.0], "Hi!")
    assert verdict.ok and outcome(k, check.id) == "passed"
    standing = k.trust.standing(W1)
    assert standing is not None and standing.verified == 1
    paid = (9 + 2) * 599
    assert k.ledger.balance(vesting_account(W2)) + k.ledger.balance(W2) == paid
    k.verifier.checked(running, W2, 9, [0, 0], [0.0, 0.0], "Hi!")  # a retry: paid and decided once
    assert k.ledger.balance(vesting_account(W2)) + k.ledger.balance(W2) == paid
    assert k.trust.standing(W1).verified == 1  # type: ignore[union-attr]
    assert k.queue.get(check.id).state is JobState.DONE  # type: ignore[union-attr]
    assert k.ledger.balance("alice") == 0 and k.ledger.audit() == []


def test_a_check_nobody_can_take_ends_inconclusive(kit: Kit) -> None:
    k = kit
    job = k.queue.get(finished_job(k))
    assert job is not None
    k.verifier.ended(job)
    [check] = k.queue.list_for(V.CHECKS_ACCOUNT)
    assert k.verifier.sweep() == []  # not yet
    k.clock.now += V.CHECK_WAIT_S + 1
    assert k.verifier.sweep() == [check.id]
    assert k.queue.get(check.id).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert outcome(k, check.id) == "inconclusive"
    standing = k.trust.standing(W1)
    assert standing is not None and (standing.verified, standing.failed) == (0, 0)
    assert k.ledger.audit() == []
