"""Books paying each worker's part to `payee(worker)` (issue 11): a worker in escrow is paid into its
vesting account, on the hold path and on the free tier's grant path; a late retry after the
worker's payee changed (it vested meanwhile) finds the job paid once and raises nothing. On SQLite
and PostgreSQL, with the real `Trust.payee`."""

from __future__ import annotations

from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator.books import Books
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.ledger.rules import vesting_account
from tests.public_swarm.dispatch_kit import chat
from tests.public_swarm.trust_kit import Clock, books_balanced, node, open_trust

SPEC = JobSpec(chat(max_tokens=8), "chat", "m", 599, 40)
FREE = JobSpec(chat(max_tokens=8), "chat", "m", 599, 40, free_address="203.0.113.9")
DIGEST = "ab" * 32
HELD = (40 + 8) * 599
REQUESTER, WORKER, CHECKER = node(1), node(2), node(3)


def test_a_worker_in_escrow_is_paid_into_its_vesting_account_on_both_paths(ledger_url: str) -> None:
    clock = Clock()
    ledger, trust = open_trust(ledger_url, clock)
    queue = JobQueue(ledger.engine, clock=clock)
    books = Books(ledger, queue, payee=trust.payee)
    with ledger:
        trust.seen(WORKER, "198.51.100.4")
        trust.seen(CHECKER, "192.0.2.4")
        ledger.grant(REQUESTER, 10**6, "grant-one")
        hold = ledger.hold(REQUESTER, HELD, D.hold_key(REQUESTER, "request-1"), D.HOLD_TTL_S)
        paid = queue.submit(REQUESTER, "request-1", DIGEST, SPEC.to_json(), 8, hold.id)
        free = queue.submit(REQUESTER, "request-2", DIGEST, FREE.to_json(), 8)
        for _ in range(2):
            assert queue.claim(WORKER, [DIGEST]) is not None
        done = [queue.finish(j.id, WORKER, "abc", 3, [1, 2, 3], {"prompt_tokens": 7, "finisher": WORKER})
                for j in (paid, free)]
        for job in done:
            books.close(job)
        assert ledger.balance(vesting_account(WORKER)) == 2 * (3 + 7) * 599
        assert ledger.balance(WORKER) == 0
        # the worker vests (a day without failure), then both jobs are closed again (late retries)
        clock.now += 24 * 3600
        trust.sweep()
        assert trust.payee(WORKER) == vesting_account(WORKER)  # still escrowed for its checked period
        assert ledger.balance(WORKER) == 2 * (3 + 7) * 599
        for job in done:
            books.close(job)  # replayed, whichever account it names now
        assert ledger.balance(WORKER) == 2 * (3 + 7) * 599
        books_balanced(ledger)


def test_a_retry_after_the_payee_changed_is_not_an_error(ledger_url: str) -> None:
    clock = Clock()
    ledger, _ = open_trust(ledger_url, clock)
    queue = JobQueue(ledger.engine, clock=clock)
    with ledger:
        ledger.grant(REQUESTER, 10**6, "grant-one")
        hold = ledger.hold(REQUESTER, HELD, D.hold_key(REQUESTER, "request-1"), D.HOLD_TTL_S)
        paid = queue.submit(REQUESTER, "request-1", DIGEST, SPEC.to_json(), 8, hold.id)
        free = queue.submit(REQUESTER, "request-2", DIGEST, FREE.to_json(), 8)
        for _ in range(2):
            assert queue.claim(WORKER, [DIGEST]) is not None
        done = [queue.finish(j.id, WORKER, "abc", 3, [1, 2, 3], {"prompt_tokens": 7, "finisher": WORKER})
                for j in (paid, free)]
        escrowed = Books(ledger, queue, payee=vesting_account)
        own = Books(ledger, queue)
        for job in done:
            escrowed.close(job)
            own.close(job)  # the payee changed between the two: paid once, nothing raised
        assert ledger.balance(vesting_account(WORKER)) == 2 * (3 + 7) * 599
        assert ledger.balance(WORKER) == 0
        books_balanced(ledger)
