"""The dispatcher's events on a real SQLite queue and ledger, without sockets: a job opened twice
with one idempotency key is queued once and told once; a cancelled job is a `job_failed`
(cancelled), once however often it is closed; a requeue past the last attempt is `lease_expired`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.public_swarm.coordinator.dispatch import Dispatcher
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.stats import SwarmStats
from hearth.public_swarm.ledger.db import Ledger
from tests.public_swarm.dispatch_kit import MODEL, Allowance, chat, links_with
from tests.public_swarm.jobs_kit import node

W1, ASKER = node(1), node(3)


@pytest.fixture
def dispatcher(tmp_path: Path) -> Iterator[Dispatcher]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.open(url, welcome=10**6)
    queue = JobQueue.open(url, max_attempts=1)
    try:
        yield Dispatcher(ledger, queue, links_with((W1, (MODEL,)),), stats=SwarmStats(), allowance=Allowance(1000))
    finally:
        queue.close()
        ledger.close()


def told(d: Dispatcher) -> list[tuple[str, dict[str, object]]]:
    return [(e.kind, e.data) for e in d.events.feed.since(0)]


def test_a_retried_open_is_told_once_and_a_cancel_is_a_job_failed(dispatcher: Dispatcher) -> None:
    d = dispatcher
    d.ledger.grant(ASKER, 10**6, "grant-events-db")
    job = d.open_job(ASKER, "key-events-1", MODEL.name, chat(), 700)
    assert d.open_job(ASKER, "key-events-1", MODEL.name, chat(), 700) == job
    d.open_job(ASKER, "key-events-2", MODEL.name, chat(max_tokens=4), None, free_address="192.0.2.7")
    cancelled = d.cancel(job.id, ASKER)
    d.close_books(cancelled)  # again (a retry): told once
    assert told(d) == [("job_queued", {"model": MODEL.name}), ("job_queued", {"model": MODEL.name}),
                       ("job_failed", {"model": MODEL.name, "reason": "cancelled"})]


def test_a_lease_that_ran_out_on_the_last_attempt_is_lease_expired(dispatcher: Dispatcher) -> None:
    d = dispatcher
    d.ledger.grant(ASKER, 10**6, "grant-events-db2")
    d.open_job(ASKER, "key-events-3", MODEL.name, chat(), 700)
    claimed = d.queue.claim(W1, [MODEL.digest], 0.01)
    assert claimed is not None
    d.queue.clock = lambda: claimed.created_at + 60
    d.sweep_once()
    assert told(d)[-1] == ("job_failed", {"model": MODEL.name, "reason": "lease_expired"})
    assert all(W1 not in str(data) and claimed.id not in str(data) for _, data in told(d))
