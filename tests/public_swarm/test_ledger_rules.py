"""The ledger's pure rules: any sequence of operations keeps the books right (hypothesis), and
every malformed input is refused with a clear error."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.errors import InvalidRequest
from hearth.public_swarm.ledger import rules
from hearth.public_swarm.ledger.errors import (
    HoldClosed,
    HoldNotFound,
    InsufficientCredits,
    LedgerInputInvalid,
    LedgerRefused,
)
from hearth.public_swarm.ledger.rules import Entry, Hold, HoldState, Kind

ACCOUNTS = ["alice", "bobby", "carol", "dave1"]


@dataclass
class Book:
    """An in-memory ledger driven only by the pure rules, as db.py drives them."""

    entries: list[Entry] = field(default_factory=list)
    holds: dict[str, Hold] = field(default_factory=dict)
    welcomed: set[str] = field(default_factory=set)
    issued: int = 0
    closings: dict[str, int] = field(default_factory=dict)

    def balance(self, account: str) -> int:
        return rules.balances(self.entries).get(account, 0)

    def apply(self, op: tuple[object, ...], now: float) -> None:
        name = op[0]
        if name == "grant":
            made = rules.plan_grant(str(op[1]), op[2])  # type: ignore[arg-type]
            self.issued += sum(e.amount for e in made)
        elif name == "welcome":
            if op[1] in self.welcomed:
                return
            made = rules.plan_welcome(str(op[1]), 7)
            self.welcomed.add(str(op[1]))
            self.issued += 7
        elif name == "hold":
            hold_id = f"hold{len(self.holds):06d}"
            hold, made = rules.plan_hold(hold_id, str(op[1]), op[2], self.balance(str(op[1])),  # type: ignore[arg-type]
                                         now, op[3])  # type: ignore[arg-type]
            self.holds[hold_id] = hold
        elif name in ("settle", "release"):
            hold_id = self._pick(op[1])  # type: ignore[arg-type]
            if name == "settle":
                hold = self.holds.get(hold_id)
                served = (hold.amount if hold else 1) * op[2] // 100  # type: ignore[operator]
                closed, _, made = rules.plan_settle(hold, hold_id, served, str(op[3]))
            else:
                closed, made = rules.plan_release(self.holds.get(hold_id), hold_id)
            self._close(closed)
        else:
            made = []
            for closed, more in rules.plan_expire(list(self.holds.values()), now):
                self._close(closed)
                made.extend(more)
        self.entries.extend(made)

    def _pick(self, index: int) -> str:
        ids = sorted(self.holds)
        return ids[index % len(ids)] if ids else "nosuchhold"

    def _close(self, hold: Hold) -> None:
        self.holds[hold.id] = hold
        self.closings[hold.id] = self.closings.get(hold.id, 0) + 1


accounts = st.sampled_from(ACCOUNTS)
amounts = st.integers(min_value=1, max_value=50)
ops = st.lists(st.one_of(
    st.tuples(st.just("grant"), accounts, amounts),
    st.tuples(st.just("welcome"), accounts),
    st.tuples(st.just("hold"), accounts, amounts, st.sampled_from([1.0, 5.0, 100.0])),
    st.tuples(st.just("settle"), st.integers(0, 30), st.integers(0, 120), accounts),
    st.tuples(st.just("release"), st.integers(0, 30)),
    st.tuples(st.just("expire"),),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_any_sequence_keeps_the_books(sequence: list[tuple[object, ...]]) -> None:
    book = Book()
    for step, op in enumerate(sequence):
        before = (list(book.entries), dict(book.holds))
        try:
            book.apply(op, now=float(step))
        except (LedgerRefused, LedgerInputInvalid):
            assert (book.entries, book.holds) == before  # a refusal writes nothing
        bal = rules.balances(book.entries)
        assert all(v >= 0 for a, v in bal.items() if a != rules.OPERATOR), bal
        assert sum(v for a, v in bal.items() if a != rules.OPERATOR) == book.issued
        assert rules.audit(bal, book.holds.values()) == []
        assert all(n == 1 for n in book.closings.values()), book.closings
        for e in book.entries:
            assert e.debit != e.credit and e.amount > 0


@given(st.integers(1, 10**6), st.integers(0, 10**6))
def test_settle_moves_the_served_part_to_the_worker_and_the_rest_back(amount: int, served: int) -> None:
    hold, _ = rules.plan_hold("abcdefgh", "alice", amount, amount, 0.0, 10)
    if served > amount:
        with pytest.raises(LedgerInputInvalid, match="more than"):
            rules.plan_settle(hold, hold.id, served, "bobby")
        return
    closed, settlement, made = rules.plan_settle(hold, hold.id, served, "bobby")
    assert closed.state is HoldState.SETTLED
    assert (settlement.served, settlement.returned) == (served, amount - served)
    moved = rules.balances(made)
    assert moved.get("bobby", 0) == served and moved.get("alice", 0) == amount - served
    assert moved.get(rules.escrow_account(hold.id), 0) == -amount


def test_a_hold_above_the_balance_is_refused_with_both_figures() -> None:
    with pytest.raises(InsufficientCredits, match=r"has 1\.5 credits.*up to 2") as err:
        rules.plan_hold("abcdefgh", "alice", 2 * rules.MICRO, 3 * rules.MICRO // 2, 0.0, 10)
    assert err.value.http_status == 402


def test_a_closed_or_unknown_hold_is_refused() -> None:
    hold, _ = rules.plan_hold("abcdefgh", "alice", 5, 5, 0.0, 10)
    closed, _ = rules.plan_release(hold, hold.id)
    with pytest.raises(HoldClosed, match="already released"):
        rules.plan_settle(closed, hold.id, 1, "bobby")
    with pytest.raises(HoldNotFound):
        rules.plan_release(None, "abcdefgh")
    assert rules.plan_expire([closed], now=100.0) == []
    [(expired, [entry])] = rules.plan_expire([hold], now=10.0)
    assert expired.state is HoldState.EXPIRED and entry.kind is Kind.EXPIRE and entry.credit == "alice"


@pytest.mark.parametrize("amount", [0, -1, 10**15 + 1, 1.5, 1.0, True, "5", None, float("nan")])
def test_malformed_amounts_are_refused(amount: object) -> None:
    with pytest.raises(LedgerInputInvalid, match="integer of micro-credits") as err:
        rules.plan_grant("alice", amount)  # type: ignore[arg-type]
    assert isinstance(err.value, InvalidRequest) and err.value.param == "amount"


@pytest.mark.parametrize("account", ["", "ab", "Alice", "a" * 65, "operator", "escrow:abcdefgh", "al ice",
                                     "al\nice", "é" * 5, 5, None, "-alice"])
def test_malformed_accounts_are_refused(account: object) -> None:
    with pytest.raises(LedgerInputInvalid, match="account must be"):
        rules.plan_grant(account, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", "short", "x" * 129, "has space", "~welcome/alice", "a/b/c/d/e", 12345678, None])
def test_malformed_keys_are_refused(key: object) -> None:
    with pytest.raises(LedgerInputInvalid, match="idempotency key"):
        rules.check_key(key)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), rules.MAX_TTL + 1, True, "10"])
def test_malformed_ttls_are_refused(ttl: object) -> None:
    with pytest.raises(LedgerInputInvalid, match="ttl"):
        rules.plan_hold("abcdefgh", "alice", 1, 10, 0.0, ttl)  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_any_text_is_a_valid_key_or_a_clear_refusal(text: str) -> None:
    try:
        assert rules.check_key(text) == text
    except LedgerInputInvalid as exc:
        assert exc.param == "key"


def test_credits_print_exactly() -> None:
    assert [rules.format_credits(m) for m in (0, 1, 1_500_000, 10_000_000, -250_000)] == [
        "0", "0.000001", "1.5", "10", "-0.25"]
