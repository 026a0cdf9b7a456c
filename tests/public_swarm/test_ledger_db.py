"""The ledger on a real database, SQLite and PostgreSQL 15 alike: idempotency, refusals that
change nothing, expiry, statements, migrations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import inspect

from hearth.errors import InvalidRequest
from hearth.public_swarm.ledger import rules
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.engine import VERSION_TABLE
from hearth.public_swarm.ledger.errors import (
    HoldClosed,
    HoldNotFound,
    InsufficientCredits,
    KeyReused,
    LedgerInputInvalid,
    LedgerRefused,
)
from hearth.public_swarm.ledger.rules import HoldState, Kind

C = rules.MICRO


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(ledger_url: str, clock: Clock) -> Iterator[Ledger]:
    with Ledger.open(ledger_url, welcome=10 * C, clock=clock) as led:
        yield led


def snapshot(led: Ledger) -> tuple[object, ...]:
    return (led.balances(), led.statement("operator", 1000), led.holds_of("alice", open_only=False))


def test_same_key_twice_writes_once(ledger: Ledger) -> None:
    assert ledger.grant("alice", 5 * C, "grant-aaaa") == ledger.grant("alice", 5 * C, "grant-aaaa")
    hold = ledger.hold("alice", 2 * C, "hold-aaaa", ttl=60)
    assert ledger.hold("alice", 2 * C, "hold-aaaa", ttl=60) == hold
    first = ledger.settle(hold.id, C // 2, "bobby", "settle-aaaa")
    assert ledger.settle(hold.id, C // 2, "bobby", "settle-aaaa") == first
    assert (first.served, first.returned) == (C // 2, 3 * C // 2)
    assert ledger.welcome("alice") == ledger.welcome("alice")
    assert ledger.balance("alice") == 5 * C - C // 2 + 10 * C
    assert ledger.balance("bobby") == C // 2
    assert ledger.balance("operator") == -15 * C
    assert len(ledger.statement("alice")) == 4  # grant, welcome, hold, release of the rest
    assert ledger.audit() == []


def test_same_key_with_other_arguments_is_refused_and_changes_nothing(ledger: Ledger) -> None:
    ledger.grant("alice", 5 * C, "grant-bbbb")
    hold = ledger.hold("alice", 2 * C, "hold-bbbb", ttl=60)
    before = snapshot(ledger)
    for attempt in (lambda: ledger.grant("alice", 6 * C, "grant-bbbb"),
                    lambda: ledger.grant("bobby", 5 * C, "grant-bbbb"),
                    lambda: ledger.hold("alice", 3 * C, "hold-bbbb", ttl=60),
                    lambda: ledger.settle(hold.id, 1, "bobby", "grant-bbbb"),
                    lambda: ledger.release(hold.id, "hold-bbbb")):
        with pytest.raises(KeyReused) as err:
            attempt()
        assert err.value.http_status == 422 and err.value.param == "key"
    assert snapshot(ledger) == before
    ledger.release(hold.id, "release-bbbb")
    with pytest.raises(KeyReused):
        ledger.settle(hold.id, 0, "bobby", "release-bbbb")


@pytest.mark.parametrize("call", [
    lambda led, h: led.grant("alice", -5, "grant-cccc"),
    lambda led, h: led.grant("alice", 1.5, "grant-cccc"),
    lambda led, h: led.grant("alice", 10**18, "grant-cccc"),
    lambda led, h: led.grant("Alice!", 5, "grant-cccc"),
    lambda led, h: led.grant("operator", 5, "grant-cccc"),
    lambda led, h: led.grant("alice", 5, "bad key"),
    lambda led, h: led.grant("alice", 5, "~welcome/alice"),
    lambda led, h: led.hold("alice", 0, "hold-cccc", ttl=60),
    lambda led, h: led.hold("alice", 5, "hold-cccc", ttl=-1),
    lambda led, h: led.hold("escrow:abcdefgh", 5, "hold-cccc", ttl=60),
    lambda led, h: led.settle(h, -1, "bobby", "settle-cccc"),
    lambda led, h: led.settle(h, 3 * C, "bobby", "settle-cccc"),  # above the hold
    lambda led, h: led.settle(h, 1, "bob by", "settle-cccc"),
    lambda led, h: led.settle("NOT-A-HOLD", 1, "bobby", "settle-cccc"),
    lambda led, h: led.release("x" * 65, "release-cccc"),
    lambda led, h: led.statement("alice", 0),
    lambda led, h: led.balance("no"),
])
def test_malformed_input_is_refused_and_changes_nothing(ledger: Ledger, call: object) -> None:
    ledger.grant("alice", 5 * C, "grant-seed")
    hold = ledger.hold("alice", 2 * C, "hold-seed", ttl=60)
    before = snapshot(ledger)
    with pytest.raises(LedgerInputInvalid) as err:
        call(ledger, hold.id)  # type: ignore[operator]
    assert isinstance(err.value, InvalidRequest) and err.value.http_status == 400 and err.value.param
    assert snapshot(ledger) == before
    assert ledger.get_hold(hold.id) == hold


def test_refusals_change_nothing(ledger: Ledger) -> None:
    ledger.grant("alice", 3 * C, "grant-dddd")
    hold = ledger.hold("alice", 2 * C, "hold-dddd", ttl=60)
    before = snapshot(ledger)
    with pytest.raises(InsufficientCredits, match=r"alice has 1 credits; .* up to 2"):
        ledger.hold("alice", 2 * C, "hold-dddd-2", ttl=60)
    with pytest.raises(HoldNotFound):
        ledger.settle("abcdefgh1234", 1, "bobby", "settle-dddd")
    assert snapshot(ledger) == before
    ledger.release(hold.id, "release-dddd")
    for call in (lambda: ledger.release(hold.id, "release-dddd-2"),
                 lambda: ledger.settle(hold.id, 1, "bobby", "settle-dddd-2")):
        with pytest.raises(HoldClosed, match="already released"):
            call()
    assert ledger.balance("alice") == 3 * C and ledger.balance("bobby") == 0
    # A refused key was not spent: it can be used once the operation can go through.
    ledger.grant("alice", 5 * C, "grant-dddd-2")
    assert ledger.hold("alice", 2 * C, "hold-dddd-2", ttl=60).state is HoldState.OPEN


def test_expire_holds_returns_the_credits(ledger: Ledger, clock: Clock) -> None:
    ledger.grant("alice", 10 * C, "grant-eeee")
    short = ledger.hold("alice", 3 * C, "hold-eeee-1", ttl=10)
    long = ledger.hold("alice", 4 * C, "hold-eeee-2", ttl=100)
    assert ledger.balance("alice") == 3 * C
    assert ledger.expire_holds() == []
    clock.now += 11
    [expired] = ledger.expire_holds()
    assert expired.id == short.id and expired.state is HoldState.EXPIRED
    assert ledger.expire_holds() == []
    assert ledger.balance("alice") == 6 * C
    with pytest.raises(HoldClosed, match="already expired"):
        ledger.settle(short.id, C, "bobby", "settle-eeee")
    assert [h.id for h in ledger.holds_of("alice")] == [long.id]
    assert ledger.expire_holds(now=clock.now + 1000)[0].id == long.id
    assert ledger.balance("alice") == 10 * C and ledger.holds_of("alice") == []
    assert ledger.audit() == []


def test_statement_shows_entries_newest_first(ledger: Ledger) -> None:
    ledger.welcome("alice")
    hold = ledger.hold("alice", 4 * C, "hold-ffff", ttl=60)
    ledger.settle(hold.id, 3 * C, "bobby", "settle-ffff")
    lines = ledger.statement("alice")
    assert [(ln.kind, ln.amount, ln.key) for ln in lines] == [
        (Kind.RELEASE, C, "settle-ffff"), (Kind.HOLD, -4 * C, "hold-ffff"), (Kind.WELCOME, 10 * C, "~welcome/alice")]
    assert lines[0].counterparty == rules.escrow_account(hold.id) and lines[0].hold_id == hold.id
    [earned] = ledger.statement("bobby")
    assert (earned.kind, earned.amount, earned.counterparty) == (Kind.SETTLE, 3 * C, rules.escrow_account(hold.id))
    assert len(ledger.statement("alice", limit=1)) == 1
    assert ledger.statement(rules.escrow_account(hold.id))[0].amount == -C


def test_reopening_migrates_once_and_keeps_the_books(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as led:
        led.grant("alice", 5, "grant-gggg")
        tables = set(inspect(led.engine).get_table_names())
    assert {"ledger_accounts", "ledger_entries", "ledger_holds", VERSION_TABLE} <= tables
    with Ledger.open(ledger_url) as again:
        assert again.balance("alice") == 5


def test_a_url_of_another_database_is_refused() -> None:
    for url in ("mysql://x@127.0.0.1/z", "postgresql+asyncpg://x@127.0.0.1/z", "not a url"):
        with pytest.raises(LedgerInputInvalid, match="sqlite:///PATH|Not a database URL"):
            Ledger.open(url)


def test_ledger_refusals_are_one_category() -> None:
    assert issubclass(InsufficientCredits, LedgerRefused) and issubclass(HoldClosed, LedgerRefused)
    assert not issubclass(KeyReused, LedgerRefused)
