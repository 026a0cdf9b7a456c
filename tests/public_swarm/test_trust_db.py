"""Workers' standing on a real database (SQLite and PostgreSQL): a new worker's earnings sit in its
vesting account until its streak of verified checks (or a day) vests them, a failed check forfeits
them, three failures quarantine, a check is decided once even when two coordinators race, and bad
input is refused with a clear error and writes nothing. The ledger invariant holds after each."""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import func, select

from hearth.public_swarm.coordinator import trust_rules as R
from hearth.public_swarm.coordinator.job_tables import checks, trust
from hearth.public_swarm.coordinator.trust import Trust
from hearth.public_swarm.coordinator.trust_rules import (
    CheckConflict,
    CheckNotFound,
    TrustInputInvalid,
    TrustState,
    WorkerUnknown,
)
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.models import entries
from hearth.public_swarm.ledger.rules import MICRO, OPERATOR, vesting_account
from tests.public_swarm.trust_kit import Clock, books_balanced, node, open_trust

W, V, REF = node(1), node(2), node(3)
ADDR = "203.0.113.7"


def earn(ledger: Ledger, trust_: Trust, worker: str, amount: int, key: str) -> None:
    """Pay `worker` as Books does: to its payee now."""
    ledger.grant(trust_.payee(worker), amount, key)


def counts(ledger: Ledger) -> tuple[int, int, int]:
    with ledger.engine.connect() as conn:
        return tuple(int(conn.execute(select(func.count()).select_from(t)).scalar_one())  # type: ignore[return-value]
                     for t in (trust, checks, entries))


def test_a_new_worker_is_paid_into_escrow_until_its_streak_vests_it(ledger_url: str) -> None:
    clock = Clock()
    ledger, t = open_trust(ledger_url, clock)
    with ledger:
        s = t.seen(W, ADDR)
        assert (s.state, s.owner, s.escrow_since) == (TrustState.NEW, "203.0.113.0/24", clock.now)
        assert t.payee(W) == vesting_account(W)
        t.seen(V, "198.51.100.9")
        for i in range(R.VEST_AFTER_VERIFIED):
            earn(ledger, t, W, MICRO, f"pay-{i:04d}")
            t.finished(W)
            t.open_check(f"check{i:04d}", f"job{i:08d}", W)
            clock.now += 60
            after = t.decide(f"check{i:04d}", V, True, "")
            assert after is not None
            if i < R.VEST_AFTER_VERIFIED - 1:
                assert after.state is TrustState.NEW and ledger.balance(W) == 0
        assert after.state is TrustState.TRUSTED and after.streak == R.VEST_AFTER_VERIFIED
        assert ledger.balance(W) == R.VEST_AFTER_VERIFIED * MICRO
        assert ledger.balance(vesting_account(W)) == 0
        # still escrowed for the checked period; the next passed check vests it
        earn(ledger, t, W, 3 * MICRO, "pay-late")
        assert ledger.balance(vesting_account(W)) == 3 * MICRO
        t.open_check("check-next", "jobnext00", W)
        t.decide("check-next", V, True, "")
        assert ledger.balance(W) == (R.VEST_AFTER_VERIFIED + 3) * MICRO
        summary = t.summary(W)
        assert (summary["jobs"], summary["verified"], summary["failed"], summary["state"]) == (
            R.VEST_AFTER_VERIFIED, R.VEST_AFTER_VERIFIED + 1, 0, "trusted")
        assert (summary["escrowed"], summary["vested"]) == (0, (R.VEST_AFTER_VERIFIED + 3) * MICRO)
        books_balanced(ledger)


def test_a_failed_check_forfeits_the_escrow_and_three_quarantine(ledger_url: str) -> None:
    clock = Clock()
    ledger, t = open_trust(ledger_url, clock)
    with ledger:
        t.seen(W, ADDR)
        t.seen(V, "198.51.100.9")
        for i in range(R.QUARANTINE_AFTER):
            earn(ledger, t, W, 2 * MICRO, f"pay-{i:04d}")
            t.open_check(f"check{i:04d}", f"job{i:08d}", W)
            clock.now += 60
            after = t.decide(f"check{i:04d}", V, False, "token 3 not in the top 8")
            assert after is not None and after.streak == 0 and after.failed == i + 1
            assert ledger.balance(vesting_account(W)) == 0
        assert after.state is TrustState.QUARANTINED and not after.may_serve(clock.now)
        assert ledger.balance(W) == 0
        assert t.summary(W)["forfeited"] == R.QUARANTINE_AFTER * 2 * MICRO
        clock.now += R.QUARANTINE_S
        t.sweep()
        lifted = t.standing(W)
        assert lifted is not None and lifted.state is TrustState.NEW and lifted.may_serve(clock.now)
        books_balanced(ledger)


def test_the_sweep_vests_a_day_without_failure_once(ledger_url: str) -> None:
    clock = Clock()
    ledger, t = open_trust(ledger_url, clock)
    with ledger:
        t.seen(W, ADDR)
        earn(ledger, t, W, 5 * MICRO, "pay-0001")
        clock.now += R.ESCROW_MAX_S - 1
        t.sweep()
        assert ledger.balance(W) == 0
        clock.now += 1
        t.sweep()
        t.sweep()
        assert ledger.balance(W) == 5 * MICRO
        assert t.standing(W).state is TrustState.TRUSTED  # type: ignore[union-attr]
        books_balanced(ledger)


def test_a_reference_is_trusted_paid_directly_and_never_checked(ledger_url: str) -> None:
    clock = Clock()
    ledger, t = open_trust(ledger_url, clock, references=(REF,))
    with ledger:
        s = t.seen(REF, "127.0.0.1")
        assert (s.state, s.reference, s.owner, s.check_rate()) == (TrustState.TRUSTED, True, f"local:{REF}", 0.0)
        assert t.payee(REF) == REF


def test_a_mismatch_counts_as_a_failed_check_other_suspicions_reset_the_streak(ledger_url: str) -> None:
    clock = Clock()
    ledger, t = open_trust(ledger_url, clock)
    with ledger:
        t.seen(W, ADDR)
        t.seen(V, "198.51.100.9")
        t.open_check("check0001", "job00000001", W)
        t.decide("check0001", V, True, "")
        earn(ledger, t, W, MICRO, "pay-0001")
        s = t.suspect(W, R.too_fast(100, 1.0, 10.0) or "")
        assert (s.streak, s.suspicions, s.failed) == (0, 1, 0)
        assert ledger.balance(vesting_account(W)) == MICRO
        s = t.suspect(W, f"{R.COUNT_MISMATCH}: 12 tokens streamed, 20 reported")
        assert (s.failed, s.streak) == (1, 0)
        assert ledger.balance(vesting_account(W)) == 0 and ledger.balance(OPERATOR) == 0
        books_balanced(ledger)


def test_two_coordinators_deciding_one_check_apply_it_once(ledger_url: str) -> None:
    clock = Clock()
    ledger, t = open_trust(ledger_url, clock)
    with ledger:
        t.seen(W, ADDR)
        t.seen(V, "198.51.100.9")
        earn(ledger, t, W, 7 * MICRO, "pay-0001")
        t.open_check("check0001", "job00000001", W)
        others = [open_trust(ledger_url, clock) for _ in range(4)]
        start = threading.Barrier(len(others))
        results: list[object] = []

        def run(tr: Trust) -> None:
            start.wait()
            results.append(tr.decide("check0001", V, False, "random tokens"))

        threads = [threading.Thread(target=run, args=(tr,)) for _, tr in others]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for led, _ in others:
            led.close()
        assert sum(r is not None for r in results) == 1
        s = t.standing(W)
        assert s is not None and s.failed == 1
        assert t.summary(W)["forfeited"] == 7 * MICRO
        books_balanced(ledger)


@pytest.mark.parametrize(("call", "error"), [
    (lambda t: t.seen("NOT-A-NODE", ADDR), TrustInputInvalid),
    (lambda t: t.seen(W, "300.1.2.3"), TrustInputInvalid),
    (lambda t: t.seen(W, "example.org"), TrustInputInvalid),
    (lambda t: t.finished(node(9)), WorkerUnknown),
    (lambda t: t.suspect(node(9), "too fast"), WorkerUnknown),
    (lambda t: t.open_check("x", "job00000001", W), TrustInputInvalid),
    (lambda t: t.open_check("check0001", "JOB!", W), TrustInputInvalid),
    (lambda t: t.open_check("check0002", "job00000002", node(9)), WorkerUnknown),
    (lambda t: t.open_check("check0001", "job00000009", W), CheckConflict),
    (lambda t: t.decide("nocheck00", V, True, ""), CheckNotFound),
    (lambda t: t.decide("check0001", "bad", True, ""), TrustInputInvalid),
    (lambda t: t.decide("check0001", W, True, ""), TrustInputInvalid),
    (lambda t: t.decide("check0001", V, "yes", ""), TrustInputInvalid),
    (lambda t: t.standings(["a"]), TrustInputInvalid),
    (lambda t: t.summary(node(9)), WorkerUnknown),
    (lambda t: t.payee("operator"), TrustInputInvalid),
])
def test_malformed_input_gets_a_clear_error_and_writes_nothing(tmp_path, call, error) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    ledger, t = open_trust(f"sqlite:///{tmp_path / 'ledger.db'}", clock)
    with ledger:
        t.seen(W, ADDR)
        t.seen(V, "198.51.100.9")
        t.open_check("check0001", "job00000001", W)
        before = counts(ledger)
        with pytest.raises(error):
            call(t)
        assert counts(ledger) == before
        assert t.standing(W) == t.standing(W) and t.standing(W).failed == 0  # type: ignore[union-attr]


def test_random_sequences_keep_the_books_and_every_credit_accounted(ledger_url: str) -> None:
    """120 random events over three workers (jobs paid to their payee, passes, failures, mismatches,
    suspicions, aborts, days passing and sweeps): after each, the ledger invariant holds; at the end
    each worker's earnings are exactly its escrow plus what vested plus what was forfeited."""
    rng = random.Random(11)
    clock = Clock()
    ledger, t = open_trust(ledger_url, clock)
    workers = [node(10 + i) for i in range(3)]
    earned = dict.fromkeys(workers, 0)
    with ledger:
        t.seen(V, "198.51.100.9")
        for i, w in enumerate(workers):
            t.seen(w, f"203.0.{113 + i}.7")
        for i in range(120):
            w = rng.choice(workers)
            kind = rng.choice(["job", "job", "job", "pass", "pass", "fail", "mismatch", "suspect", "abort", "time"])
            clock.now += rng.uniform(1, 4 * 3600)
            if kind == "job":
                earn(ledger, t, w, 1000 + i, f"pay-{i:05d}")
                earned[w] += 1000 + i
                t.finished(w)
            elif kind in ("pass", "fail"):
                t.open_check(f"check{i:05d}", f"job{i:08d}", w)
                assert t.decide(f"check{i:05d}", V, kind == "pass", "" if kind == "pass" else "flipped") is not None
                assert t.decide(f"check{i:05d}", V, kind == "pass", "") is None
            elif kind == "mismatch":
                t.suspect(w, f"{R.RECEIPT_MISMATCH}: digest differs")
            elif kind == "suspect":
                t.suspect(w, "too fast: 900 tokens/s")
            elif kind == "abort":
                t.aborted(w)
            else:
                t.sweep()
            books_balanced(ledger)
        for w in workers:
            s = t.summary(w)
            assert s["escrowed"] + s["vested"] + s["forfeited"] == earned[w], (w, s, earned[w])
            assert ledger.balance(w) == s["vested"]


def test_coordinators_racing_on_one_worker_lose_no_update(ledger_url: str) -> None:
    """4 Trust instances (as 4 coordinator processes) see a new worker at once (one row made), then
    count 10 finished jobs each and open-and-decide their own checks: every update lands."""
    clock = Clock()
    others = [open_trust(ledger_url, clock) for _ in range(4)]
    start = threading.Barrier(len(others))
    errors: list[BaseException] = []

    def run(n: int, tr: Trust) -> None:
        try:
            start.wait()
            tr.seen(W, ADDR)
            tr.seen(V, "198.51.100.9")
            for _ in range(10):
                tr.finished(W)
            tr.open_check(f"check-{n}-0001", f"job{n:08d}", W)
            tr.decide(f"check-{n}-0001", V, True, "")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, tr)) for n, (_, tr) in enumerate(others)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    try:
        assert not errors, errors
        s = others[0][1].standing(W)
        assert s is not None and (s.jobs, s.verified, s.streak) == (40, 4, 4)
        assert counts(others[0][0])[0] == 2
        books_balanced(others[0][0])
    finally:
        for led, _ in others:
            led.close()
