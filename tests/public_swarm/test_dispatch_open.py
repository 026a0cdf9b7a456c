"""Opening jobs and settling them, on SQLite and a real PostgreSQL (no sockets): the price comes from
the live workers' offers, the ceiling and the balance are checked, a refusal writes nothing, and a
job that two workers streamed is settled once, each worker paid its part."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hearth.errors import InvalidRequest
from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator.dispatch import Dispatcher, ended
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.stats import SwarmStats
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.errors import HoldClosed, InsufficientCredits, KeyReused
from hearth.public_swarm.pricing import PriceAboveCeiling
from tests.public_swarm.dispatch_kit import DIGEST, MODEL, PRICE, Allowance, chat, links_with
from tests.public_swarm.jobs_kit import node, snapshot

W1, W2, ASKER = node(1), node(2), node(3)


@pytest.fixture
def books(ledger_url: str) -> Iterator[tuple[Ledger, JobQueue, Dispatcher]]:
    ledger = Ledger.open(ledger_url, welcome=10**6)
    queue = JobQueue.open(ledger_url)
    d = Dispatcher(ledger, queue, links_with((W1, (MODEL,)), (W2, (MODEL,))), stats=SwarmStats(),
                   allowance=Allowance(1000))
    try:
        yield ledger, queue, d
    finally:
        queue.close()
        ledger.close()


def state(ledger: Ledger, queue: JobQueue) -> tuple[Any, ...]:
    return ledger.balances(), [(h.id, h.state) for h in ledger.holds_of(ASKER, open_only=False)], snapshot(queue)


def test_open_holds_the_max_cost_and_queues(books: tuple[Ledger, JobQueue, Dispatcher]) -> None:
    ledger, queue, d = books
    ledger.grant(ASKER, 10**6, "grant-test-1")
    assert [(m.name, m.workers, m.price) for m in d.served_models()] == [(MODEL.name, 2, PRICE)]
    job = d.open_job(ASKER, "key-00001", MODEL.name, chat(), 700)
    spec = D.JobSpec.from_json(job.request)
    assert job.digest == DIGEST and job.hold_id is not None and spec.price == PRICE
    assert d.hold_amount(job) == (spec.prompt_cap + 16) * PRICE == 10**6 - ledger.balance(ASKER)
    assert d.open_job(ASKER, "key-00001", MODEL.name, chat(), 700) == job  # a retry
    assert len(ledger.holds_of(ASKER)) == 1


def test_refusals_write_nothing(books: tuple[Ledger, JobQueue, Dispatcher]) -> None:
    ledger, queue, d = books
    ledger.grant(ASKER, 100, "grant-test-2")
    before = state(ledger, queue)
    for model, max_price, request, error in (
        ("nope", None, chat(), D.ModelNotServed),
        ("sha256:" + "0" * 64, None, chat(), D.NoWorker),
        (MODEL.name, PRICE - 1, chat(), PriceAboveCeiling),
        (MODEL.name, None, chat(max_tokens=4096), InvalidRequest),
        (MODEL.name, None, chat(), InsufficientCredits),
    ):
        with pytest.raises(error):
            d.open_job(ASKER, "key-00002", model, request, max_price)
        assert state(ledger, queue) == before
    with pytest.raises(D.FreeTierClosed):
        Dispatcher(ledger, queue, d.links, stats=SwarmStats()).open_job(
            D.free_account("1.2.3.4"), "key-00003", MODEL.name, chat(), None, free_address="1.2.3.4")
    assert state(ledger, queue) == before


def test_a_job_two_workers_streamed_is_settled_once(books: tuple[Ledger, JobQueue, Dispatcher]) -> None:
    ledger, queue, d = books
    ledger.grant(ASKER, 10**6, "grant-test-3")
    job = d.open_job(ASKER, "key-00004", MODEL.name, chat(max_tokens=10), None)
    assert queue.claim(W1, [DIGEST]) is not None
    queue.progress(job.id, W1, "Hello", 3, [1, 2, 3])
    queue.fail(job.id, W1, "lost", retry=True)
    resumed = queue.claim(W2, [DIGEST])
    assert resumed is not None and resumed.token_ids == (1, 2, 3) and resumed.text == "Hello"
    done = queue.finish(job.id, W2, "Hello world", 5, [1, 2, 3, 4, 5],
                        {"finish_reason": "stop", "prompt_tokens": 7, "finisher": W2, "receipt": "r"})
    assert done.parts == ((W1, 3), (W2, 2))
    d.close_books(done)
    d.close_books(done)  # a second call (another process, a retry) pays nobody again
    view = ended(done)
    assert (view.cost, view.workers, view.prompt_tokens, view.completion_tokens) == ((7 + 5) * PRICE, (W1, W2), 7, 5)
    assert ledger.balance(W1) == 3 * PRICE and ledger.balance(W2) == (2 + 7) * PRICE
    assert ledger.balance(ASKER) == 10**6 - view.cost
    assert ledger.audit() == [] and sum(ledger.balances().values()) == 0


def test_free_jobs_take_the_allowance_and_the_operator_pays(books: tuple[Ledger, JobQueue, Dispatcher]) -> None:
    ledger, queue, d = books
    allowance = d.allowance
    assert isinstance(allowance, Allowance)
    who = D.free_account("10.1.2.3")
    job = d.open_job(who, "key-00005", MODEL.name, chat(max_tokens=10), None, free_address="10.1.2.3")
    spec = D.JobSpec.from_json(job.request)
    assert job.hold_id is None and allowance.left["10.1.2.3"] == 1000 - spec.allowance_tokens
    queue.claim(W1, [DIGEST])
    done = queue.finish(job.id, W1, "ok", 2, [8, 9], {"finish_reason": "stop", "prompt_tokens": 4, "finisher": W1,
                                                      "receipt": "r"})
    d.close_books(done)
    d.close_books(done)
    assert ledger.balance(W1) == 6 * PRICE and ended(done).cost == 0
    assert allowance.left["10.1.2.3"] == 1000 - 6  # what the job used; the rest came back once
    assert ledger.audit() == []


def test_split_settle_replays_and_refuses_other_payouts(books: tuple[Ledger, JobQueue, Dispatcher]) -> None:
    ledger, _, _ = books
    ledger.grant(ASKER, 1000, "grant-test-6")
    hold = ledger.hold(ASKER, 900, "hold-test-6", 60)
    done = ledger.settle_split(hold.id, {W1: 300, W2: 200}, "settle-test-6")
    assert done.paid == tuple(sorted([(W1, 300), (W2, 200)])) and done.returned == 400
    assert ledger.settle_split(hold.id, {W1: 300, W2: 200}, "settle-test-6") == done
    with pytest.raises(KeyReused):
        ledger.settle_split(hold.id, {W1: 500}, "settle-test-6")
    with pytest.raises(HoldClosed):
        ledger.settle_split(hold.id, {W1: 1}, "settle-test-7")
    assert ledger.balance(ASKER) == 1000 - 500 and ledger.balance(W1) == 300 and ledger.audit() == []
