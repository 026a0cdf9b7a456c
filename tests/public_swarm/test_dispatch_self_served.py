"""A job its own requester served: a node that runs `hearth contribute` and submits with the same
identity (`hearth jobs submit` from the same HEARTH_HOME) may be offered its own job. The ledger
refuses to pay a requester from its own hold, so settling must leave the requester's part out:
before, the settle raised, the job stayed DONE with its hold open for hours and the usage showed a
cost nobody was charged. On SQLite and PostgreSQL, no sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator.dispatch import Dispatcher, ended
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.stats import SwarmStats
from hearth.public_swarm.ledger.db import Ledger
from tests.public_swarm.dispatch_kit import DIGEST, MODEL, PRICE, chat, links_with
from tests.public_swarm.jobs_kit import node

SELF, OTHER = node(11), node(12)
RESULT = {"finish_reason": "stop", "prompt_tokens": 7, "receipt": "r"}


@pytest.fixture
def books(ledger_url: str) -> Iterator[tuple[Ledger, JobQueue, Dispatcher]]:
    ledger = Ledger.open(ledger_url, welcome=10**6)
    queue = JobQueue.open(ledger_url)
    d = Dispatcher(ledger, queue, links_with((SELF, (MODEL,)), (OTHER, (MODEL,))), stats=SwarmStats())
    try:
        ledger.grant(SELF, 10**6, "grant-self-1")
        yield ledger, queue, d
    finally:
        queue.close()
        ledger.close()


def test_a_job_served_by_its_own_requester_is_settled_and_costs_nothing(
        books: tuple[Ledger, JobQueue, Dispatcher]) -> None:
    ledger, queue, d = books
    job = d.open_job(SELF, "key-self-1", MODEL.name, chat(max_tokens=10), None)
    assert queue.claim(SELF, [DIGEST]) is not None
    done = queue.finish(job.id, SELF, "Hello world", 5, [1, 2, 3, 4, 5], {**RESULT, "finisher": SELF})
    d.close_books(done)
    assert ledger.holds_of(SELF) == []  # settled now, not left to expire
    assert ledger.balance(SELF) == 10**6 and ended(done).cost == 0
    assert ledger.audit() == []


def test_a_job_its_requester_and_another_worker_streamed_pays_the_other_only(
        books: tuple[Ledger, JobQueue, Dispatcher]) -> None:
    ledger, queue, d = books
    job = d.open_job(SELF, "key-self-2", MODEL.name, chat(max_tokens=10), None)
    assert queue.claim(SELF, [DIGEST]) is not None
    queue.progress(job.id, SELF, "Hello", 3, [1, 2, 3])
    queue.fail(job.id, SELF, "lost", retry=True)
    assert queue.claim(OTHER, [DIGEST]) is not None
    done = queue.finish(job.id, OTHER, "Hello world", 5, [1, 2, 3, 4, 5], {**RESULT, "finisher": OTHER})
    d.close_books(done)
    cost = (2 + 7) * PRICE  # OTHER's 2 tokens and the prompt it evaluated; SELF's 3 are its own
    assert ended(done).cost == cost and ended(done).workers == (SELF, OTHER)
    assert ledger.balance(OTHER) == cost and ledger.balance(SELF) == 10**6 - cost
    assert ledger.holds_of(SELF) == [] and ledger.audit() == []
    assert D.not_to_requester({SELF: 5, OTHER: 6}, SELF) == {OTHER: 6}
