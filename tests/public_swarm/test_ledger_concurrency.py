"""The ledger under concurrency (issue 10, "How it is checked"): 8 requesters × 25 requests at
once, with balances that allow only some. Every thread opens its own Ledger (its own engine and
connections, as separate coordinator processes would), the requests of one requester race each
other, and a watcher reads balances throughout: none is ever negative, and afterwards the sum
over all accounts equals the grants issued, on SQLite and on PostgreSQL."""

from __future__ import annotations

import random
import threading
from collections import Counter

from hearth.public_swarm.ledger import rules
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.errors import InsufficientCredits

C = rules.MICRO
REQUESTERS = [f"requester{i}" for i in range(8)]
WORKERS = ["worker0", "worker1", "worker2"]
PER_REQUESTER = 25
THREADS = 16
GRANT = 10 * C
HOLD = 2 * C
SERVED = 3 * C // 5  # 25 requests would cost 15 credits: at most 14 holds of 2 fit in 10


def test_eight_requesters_racing_never_go_negative(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as setup:
        for r in REQUESTERS:
            setup.grant(r, GRANT, f"grant-{r}")
    tasks = [(r, i) for r in REQUESTERS for i in range(PER_REQUESTER)]
    random.Random(10).shuffle(tasks)
    outcomes: Counter[str] = Counter()
    served: Counter[str] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()
    negatives: list[dict[str, int]] = []

    def run(share: list[tuple[str, int]], n: int) -> None:
        try:
            with Ledger.open(ledger_url, pool_size=2) as led:
                start.wait()
                for requester, i in share:
                    try:
                        hold = led.hold(requester, HOLD, f"hold-{requester}-{i}", ttl=600)
                    except InsufficientCredits:
                        with lock:
                            outcomes["refused"] += 1
                        continue
                    worker = WORKERS[(n + i) % len(WORKERS)]
                    led.settle(hold.id, SERVED, worker, f"settle-{requester}-{i}")
                    with lock:
                        outcomes["served"] += 1
                        served[requester] += SERVED
        except BaseException as exc:  # reported by the main thread below
            errors.append(exc)
            start.abort()

    def watch() -> None:
        with Ledger.open(ledger_url, pool_size=1) as led:
            while not done.is_set():
                bal = led.balances()
                if any(v < 0 for a, v in bal.items() if a != rules.OPERATOR):
                    negatives.append(bal)
                done.wait(0.02)

    threads = [threading.Thread(target=run, args=(tasks[n::THREADS], n)) for n in range(THREADS)]
    watcher = threading.Thread(target=watch)
    for t in threads:
        t.start()
    start.wait(timeout=120)
    watcher.start()
    for t in threads:
        t.join(timeout=300)
    done.set()
    watcher.join(timeout=30)
    assert not errors, errors
    assert not negatives, negatives[:1]

    with Ledger.open(ledger_url) as led:
        bal = led.balances()
        assert led.audit() == []
        assert all(v >= 0 for a, v in bal.items() if a != rules.OPERATOR)
        assert sum(v for a, v in bal.items() if a != rules.OPERATOR) == len(REQUESTERS) * GRANT
        assert -bal[rules.OPERATOR] == len(REQUESTERS) * GRANT
        for r in REQUESTERS:
            assert bal[r] == GRANT - served[r]
            assert bal[r] >= 0
        assert sum(bal.get(w, 0) for w in WORKERS) == outcomes["served"] * SERVED
        assert not any(led.holds_of(r) for r in REQUESTERS)
    assert outcomes["served"] + outcomes["refused"] == len(tasks)
    # Only some fit: each requester can afford at most 14 (at least 5 even when all race at once).
    assert 8 * 5 <= outcomes["served"] <= 8 * 14 and outcomes["refused"] >= 8 * 11
    print(f"served {outcomes['served']}, refused {outcomes['refused']}")


def test_the_same_key_sent_at_once_from_many_connections_writes_once(ledger_url: str) -> None:
    """A grant takes no row lock: racing writers of one key meet at the unique (op_key, leg)
    constraint, and the losers replay the winner's result."""
    results: list[object] = []
    errors: list[BaseException] = []
    ledgers = [Ledger.open(ledger_url, pool_size=1) for _ in range(8)]
    start = threading.Barrier(len(ledgers))

    def run(led: Ledger) -> None:
        try:
            start.wait()
            results.append(led.grant("alice", 5 * C, "grant-race-0001"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(led,)) for led in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors, errors
        assert len(results) == 8 and len(set(map(repr, results))) == 1
        assert ledgers[0].balance("alice") == 5 * C
        assert len(ledgers[0].statement("alice")) == 1
    finally:
        for led in ledgers:
            led.close()
