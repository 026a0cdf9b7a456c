"""Workers' vesting accounts on a real database (SQLite and PostgreSQL): earnings settled or granted
into `vesting:<worker>`, `vest` and `forfeit` moving its whole balance, once per key (an empty
escrow spends its key too), keys reused across operations refused, malformed input refused with
nothing written, and vests and forfeits racing settlements into the escrow from other connections
without losing or making a credit."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from hearth.public_swarm.ledger import rules
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.errors import KeyReused, LedgerInputInvalid
from hearth.public_swarm.ledger.models import entries
from hearth.public_swarm.ledger.rules import OPERATOR, Kind, vesting_account

C = rules.MICRO
ESCROW = vesting_account("worker1")


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as led:
        yield led


def n_entries(led: Ledger) -> int:
    with led.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(entries)).scalar_one())


def test_earnings_in_escrow_vest_to_the_worker_once_per_key(ledger: Ledger) -> None:
    ledger.grant("alice", 10 * C, "grant-alice")
    hold = ledger.hold("alice", 4 * C, "hold-alice-1", ttl=600)
    ledger.settle_split(hold.id, {ESCROW: 3 * C}, "settle-alice-1")
    assert (ledger.balance(ESCROW), ledger.balance("alice")) == (3 * C, 7 * C)
    assert ledger.vest("worker1", "vest-worker1-0001") == 3 * C
    ledger.grant(ESCROW, 2 * C, "grant-free-job")
    written = n_entries(ledger)
    assert ledger.vest("worker1", "vest-worker1-0001") == 3 * C  # a replay: the new 2 stay in escrow
    assert n_entries(ledger) == written
    assert (ledger.balance("worker1"), ledger.balance(ESCROW)) == (3 * C, 2 * C)
    assert ledger.forfeit("worker1", "forfeit-worker1-0001") == 2 * C
    assert ledger.balance(ESCROW) == 0 and ledger.balance(OPERATOR) == -10 * C
    assert [line.kind for line in ledger.statement(ESCROW)] == [Kind.FORFEIT, Kind.GRANT, Kind.VEST, Kind.SETTLE]
    assert ledger.audit() == []


def test_an_empty_escrow_moves_nothing_but_spends_its_key(ledger: Ledger) -> None:
    assert ledger.vest("worker1", "vest-empty-0001") == 0
    ledger.grant(ESCROW, C, "grant-later-1")
    assert ledger.vest("worker1", "vest-empty-0001") == 0
    assert ledger.balance(ESCROW) == C
    assert ledger.forfeit("worker1", "forfeit-empty-01") == C


@pytest.mark.parametrize(("first", "then"), [
    (lambda led: led.vest("worker1", "key-shared-01"), lambda led: led.forfeit("worker1", "key-shared-01")),
    (lambda led: led.vest("worker1", "key-shared-01"), lambda led: led.vest("worker2", "key-shared-01")),
    (lambda led: led.vest("worker1", "key-shared-01"), lambda led: led.grant("worker1", C, "key-shared-01")),
    (lambda led: led.grant(ESCROW, C, "key-shared-01"), lambda led: led.vest("worker1", "key-shared-01")),
])
def test_a_key_reused_for_another_operation_is_refused(ledger: Ledger, first: object, then: object) -> None:
    ledger.grant(ESCROW, 5 * C, "grant-escrow-1")
    first(ledger)  # type: ignore[operator]
    before = ledger.balances()
    with pytest.raises(KeyReused):
        then(ledger)  # type: ignore[operator]
    assert ledger.balances() == before


@pytest.mark.parametrize("call", [
    lambda led: led.vest("operator", "vest-bad-00001"),
    lambda led: led.vest(ESCROW, "vest-bad-00001"),
    lambda led: led.vest("escrow:abcdef123456", "vest-bad-00001"),
    lambda led: led.forfeit("Worker!", "vest-bad-00001"),
    lambda led: led.forfeit("worker1", "short"),
    lambda led: led.grant("vesting:operator", C, "grant-bad-0001"),
    lambda led: led.grant("vesting:vesting:worker1", C, "grant-bad-0001"),
    lambda led: led.balance("vesting:X"),
])
def test_malformed_input_is_refused_and_writes_nothing(ledger: Ledger, call: object) -> None:
    before = n_entries(ledger)
    with pytest.raises(LedgerInputInvalid):
        call(ledger)  # type: ignore[operator]
    assert n_entries(ledger) == before


def test_a_requester_is_not_paid_into_its_own_escrow_from_its_hold(ledger: Ledger) -> None:
    ledger.grant("alice", 10 * C, "grant-alice")
    hold = ledger.hold("alice", 4 * C, "hold-alice-1", ttl=600)
    with pytest.raises(LedgerInputInvalid):
        ledger.settle_split(hold.id, {vesting_account("alice"): C}, "settle-alice-1")
    assert ledger.balance("alice") == 6 * C and ledger.audit() == []


def test_vests_and_forfeits_racing_settlements_into_the_escrow_lose_nothing(ledger_url: str) -> None:
    """4 threads settle 15 holds each into worker1's escrow while 2 others vest and forfeit it with
    fresh keys, each on its own Ledger (as separate coordinator processes would)."""
    with Ledger.open(ledger_url) as setup:
        setup.grant("alice", 1000 * C, "grant-alice")
    errors: list[BaseException] = []
    moved = {"vest": 0, "forfeit": 0}
    lock = threading.Lock()
    start = threading.Barrier(6)
    settled = threading.Event()

    def settle(n: int) -> None:
        try:
            with Ledger.open(ledger_url, pool_size=1) as led:
                start.wait()
                for i in range(15):
                    hold = led.hold("alice", 2 * C, f"hold-{n}-{i:04d}", ttl=600)
                    led.settle_split(hold.id, {ESCROW: C}, f"settle-{n}-{i:04d}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    def move(n: int) -> None:
        try:
            rng = random.Random(n)
            with Ledger.open(ledger_url, pool_size=1) as led:
                start.wait()
                i = 0
                while not settled.is_set() or i < 3:
                    op = rng.choice(["vest", "forfeit"])
                    got = getattr(led, op)("worker1", f"{op}-{n}-{i:05d}")
                    assert getattr(led, op)("worker1", f"{op}-{n}-{i:05d}") == got
                    with lock:
                        moved[op] += got
                    i += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    settlers = [threading.Thread(target=settle, args=(n,)) for n in range(4)]
    movers = [threading.Thread(target=move, args=(n,)) for n in range(2)]
    for t in settlers + movers:
        t.start()
    for t in settlers:
        t.join(timeout=300)
    settled.set()
    for t in movers:
        t.join(timeout=300)
    assert not errors, errors
    with Ledger.open(ledger_url) as led:
        assert led.audit() == []
        assert led.balance(ESCROW) >= 0
        assert moved["vest"] + moved["forfeit"] + led.balance(ESCROW) == 60 * C
        assert led.balance("worker1") == moved["vest"]
        assert led.balance("alice") == 1000 * C - 60 * C
        assert -led.balance(OPERATOR) == 1000 * C - moved["forfeit"]


def test_the_migrations_build_the_tables_the_code_uses(ledger: Ledger) -> None:
    """Alembic's comparison of the ledger's migrations (0002 adds `ledger_moves`) with `models` finds nothing."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hearth.public_swarm.ledger.models import metadata

    with ledger.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diff if "ledger_" in repr(d) and "alembic_version" not in repr(d)] == []


@given(st.lists(st.tuples(st.sampled_from(["earn", "vest", "forfeit"]), st.integers(1, 10**9)), max_size=60))
def test_planned_moves_keep_the_rules_audit_clean(ops: list[tuple[str, int]]) -> None:
    """The pure rules: earnings into a vesting account, then whole-balance vests and forfeits,
    never leave a negative balance or an unbalanced sum, and empty the escrow each time."""
    made: list[rules.Entry] = []
    for op, amount in ops:
        held = rules.balances(made).get(ESCROW, 0)
        if op == "earn":
            made += rules.plan_grant(ESCROW, amount)
        else:
            planned = (rules.plan_vest if op == "vest" else rules.plan_forfeit)("worker1", held)
            assert sum(e.amount for e in planned) == held
            made += planned
            assert rules.balances(made).get(ESCROW, 0) == 0
        assert rules.audit(rules.balances(made), []) == []


@given(st.text(max_size=90))
def test_only_participants_and_their_vesting_accounts_are_payees(account: str) -> None:
    try:
        got = rules.check_payee(account)
    except LedgerInputInvalid:
        return
    bare = got.removeprefix(rules.VESTING_PREFIX)
    assert rules.ACCOUNT_ID.fullmatch(bare) and bare != OPERATOR and ":" not in bare
