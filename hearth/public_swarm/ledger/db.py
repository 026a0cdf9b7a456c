"""The credit ledger on a real database: `Ledger.open(url)` and its operations.

Each operation runs in one transaction that locks what it checks (the requester's account row,
or the hold's row, `SELECT … FOR UPDATE` on PostgreSQL; `BEGIN IMMEDIATE` serialises SQLite),
asks `rules` what to write, and writes it. Every operation that a caller starts carries an
idempotency key: the same key again returns the first result and writes nothing; the same key
with other arguments raises `KeyReused`. Keys are global to the ledger, so the coordinator should
make them from its own ids (`job-<id>-hold`) or prefix a requester's keys with the requester.

Used by the coordinator (later): hold a request's maximum cost before dispatching it, settle at
the tokens served, release on a refusal, expire holds on a timer and at start.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row, func, insert, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from hearth.public_swarm.ledger import rules
from hearth.public_swarm.ledger.engine import backend_of, make_engine, upgrade
from hearth.public_swarm.ledger.errors import HoldClosed, KeyReused, LedgerInputInvalid
from hearth.public_swarm.ledger.models import accounts, entries, holds, moves
from hearth.public_swarm.ledger.rules import Entry, Hold, HoldState, Kind, Settlement, SplitSettlement

T = TypeVar("T")
EXPIRE_BATCH = 500
"""Holds one `expire_holds` transaction closes at most (call it again for more)."""


@dataclass(frozen=True)
class Line:
    """One entry as an account's statement shows it: `amount` is signed (+ in, - out)."""

    id: int
    at: float
    kind: Kind
    amount: int
    counterparty: str
    hold_id: str | None
    key: str


class Ledger:
    """The ledger at one database URL. Thread-safe: each call takes its own pooled connection."""

    def __init__(self, engine: Engine, *, welcome: int = rules.WELCOME_GRANT,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.welcome_amount = rules.check_amount(welcome, "welcome")
        self.clock = clock
        self._pg = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str, *, welcome: int = rules.WELCOME_GRANT, clock: Callable[[], float] = time.time,
             pool_size: int = 10) -> Ledger:
        """Connect to `url` (`sqlite:///path` or `postgresql+psycopg://…`) and migrate it to head."""
        backend_of(url)
        engine = make_engine(url, pool_size=pool_size)
        upgrade(engine)
        return cls(engine, welcome=welcome, clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- operations --------------------------------------------------------------------------

    def grant(self, account: str, amount: int, key: str) -> Entry:
        """The operator gives `amount` micro-credits to `account` (a participant or a worker's
        vesting account)."""
        rules.check_key(key)
        planned = rules.plan_grant(account, amount)
        request = rules.fingerprint("grant", account, amount)

        def body(conn: Connection) -> Entry:
            self._ensure_account(conn, account)
            self._write(conn, key, request, planned)
            return planned[0]

        return self._run(key, request, None, body, lambda conn, row: _entry(row))

    def was_welcomed(self, account: str) -> bool:
        """Whether this identity already had its welcome grant."""
        rules.check_account(account)
        with self.engine.connect() as conn:
            return conn.execute(select(entries.c.id).where(entries.c.op_key == rules.welcome_key(account))
                                .limit(1)).first() is not None

    def welcome(self, account: str) -> Entry:
        """The welcome grant, once per identity: later calls return the first grant's entry."""
        planned = rules.plan_welcome(account, self.welcome_amount)
        key, request = rules.welcome_key(account), rules.fingerprint("welcome", account)

        def body(conn: Connection) -> Entry:
            self._ensure_account(conn, account)
            self._write(conn, key, request, planned)
            return planned[0]

        return self._run(key, request, None, body, lambda conn, row: _entry(row))

    def hold(self, requester: str, amount: int, key: str, ttl: float) -> Hold:
        """Set aside `amount` of the requester's credits for one request, for at most `ttl` seconds.
        A retry with the same key returns the hold as it is now."""
        rules.check_key(key)
        rules.check_account(requester, "requester")
        rules.check_amount(amount)
        rules.check_ttl(ttl)
        request = rules.fingerprint("hold", requester, amount, ttl)

        def lock(conn: Connection) -> None:
            self._ensure_account(conn, requester)
            conn.execute(select(accounts.c.id).where(accounts.c.id == requester).with_for_update())

        def body(conn: Connection) -> Hold:
            now = self.clock()
            hold, planned = rules.plan_hold(secrets.token_hex(12), requester, amount,
                                            self._balance(conn, requester), now, ttl)
            conn.execute(insert(holds).values(id=hold.id, requester=requester, amount=amount,
                                              expires_at=hold.expires_at, state=hold.state.value, created_at=now))
            self._write(conn, key, request, planned)
            return hold

        return self._run(key, request, lock, body, lambda conn, row: self._hold(conn, row.hold_id) or _gone(row))

    def settle(self, hold_id: str, served: int, worker: str, key: str) -> Settlement:
        """Close a hold at `served` micro-credits: those to `worker`, the rest back to the requester."""
        rules.check_key(key)
        rules.check_hold_id(hold_id)
        rules.check_amount(served, "served", allow_zero=True)
        rules.check_payee(worker, "worker")
        request = rules.fingerprint("settle", hold_id, served, worker)

        def body(conn: Connection) -> Settlement:
            closed, settlement, planned = rules.plan_settle(self._hold(conn, hold_id), hold_id, served, worker)
            self._ensure_account(conn, worker)
            self._close(conn, closed)
            self._write(conn, key, request, planned)
            return settlement

        def replay(conn: Connection, row: Row[Any]) -> Settlement:
            hold = self._hold(conn, hold_id) or _gone(row)
            return Settlement(hold_id, worker, served, hold.amount - served)

        return self._run(key, request, self._lock_hold(hold_id), body, replay)

    def settle_split(self, hold_id: str, paid: Mapping[str, int], key: str) -> SplitSettlement:
        """Close a hold paying several workers (`paid`: worker -> micro-credits), the rest back to
        the requester: a job that more than one worker streamed. Once per key, as `settle`."""
        rules.check_key(key)
        rules.check_hold_id(hold_id)
        shown = sorted(paid.items()) if isinstance(paid, Mapping) else paid
        request = rules.fingerprint("settle_split", hold_id, shown)

        def body(conn: Connection) -> SplitSettlement:
            closed, settlement, planned = rules.plan_settle_split(self._hold(conn, hold_id), hold_id, paid)
            for worker, _ in settlement.paid:
                self._ensure_account(conn, worker)
            self._close(conn, closed)
            self._write(conn, key, request, planned)
            return settlement

        def replay(conn: Connection, row: Row[Any]) -> SplitSettlement:
            hold = self._hold(conn, hold_id) or _gone(row)
            done = tuple(sorted((w, a) for w, a in paid.items() if a))
            return SplitSettlement(hold_id, done, hold.amount - sum(a for _, a in done))

        return self._run(key, request, self._lock_hold(hold_id), body, replay)

    def release(self, hold_id: str, key: str) -> Hold:
        """Close a hold with nothing served (the request was refused or dropped): all of it back."""
        rules.check_key(key)
        rules.check_hold_id(hold_id)
        request = rules.fingerprint("release", hold_id)

        def body(conn: Connection) -> Hold:
            closed, planned = rules.plan_release(self._hold(conn, hold_id), hold_id)
            self._close(conn, closed)
            self._write(conn, key, request, planned)
            return closed

        return self._run(key, request, self._lock_hold(hold_id), body,
                         lambda conn, row: self._hold(conn, hold_id) or _gone(row))

    def vest(self, worker: str, key: str, *, conn: Connection | None = None) -> int:
        """Move the whole of `worker`'s vesting account to the worker: its escrowed earnings are its
        own now. Returns the micro-credits moved (0 when the escrow was empty: the key is spent
        anyway). Once per key. With `conn`, runs inside the caller's transaction (the caller
        guarantees the key is not raced, e.g. by a guarded write of its own in that transaction)."""
        return self._move_escrow("vest", worker, key, conn)

    def forfeit(self, worker: str, key: str, *, conn: Connection | None = None) -> int:
        """Move the whole of `worker`'s vesting account to the operator (a failed spot-check).
        Returns the micro-credits moved. Once per key; `conn` as for `vest`."""
        return self._move_escrow("forfeit", worker, key, conn)

    def _move_escrow(self, op: str, worker: str, key: str, conn: Connection | None) -> int:
        rules.check_key(key)
        escrow = rules.vesting_account(worker)
        request = rules.fingerprint(op, worker)
        plan = rules.plan_vest if op == "vest" else rules.plan_forfeit

        def lock(c: Connection) -> None:
            self._ensure_account(c, escrow)
            c.execute(select(accounts.c.id).where(accounts.c.id == escrow).with_for_update())

        def body(c: Connection) -> int:
            planned = plan(worker, self._balance(c, escrow))
            if planned:
                self._ensure_account(c, planned[0].credit)
                self._write(c, key, request, planned)
            amount = sum(e.amount for e in planned)
            c.execute(insert(moves).values(op_key=key, request=request, amount=amount, created_at=self.clock()))
            return amount

        def replay(c: Connection, row: Row[Any]) -> int:
            got = c.execute(select(moves.c.amount).where(moves.c.op_key == key)).scalar_one_or_none()
            return 0 if got is None else int(got)

        if conn is None:
            return self._run(key, request, lock, body, replay)
        lock(conn)
        return self._once(conn, key, request, body, replay)

    def expire_holds(self, now: float | None = None) -> list[Hold]:
        """Close every open hold past its expiry (up to `EXPIRE_BATCH`), returning its credits.
        Safe to run from several coordinators at once: each hold expires once."""
        now = self.clock() if now is None else now
        with self.engine.begin() as conn:
            query = (select(holds).where(holds.c.state == HoldState.OPEN.value, holds.c.expires_at <= now)
                     .order_by(holds.c.expires_at).limit(EXPIRE_BATCH))
            if self._pg:
                query = query.with_for_update(skip_locked=True)
            due = [_hold(r) for r in conn.execute(query)]
            out = []
            for closed, planned in rules.plan_expire(due, now):
                self._close(conn, closed)
                self._write(conn, rules.expire_key(closed.id), rules.fingerprint("expire", closed.id), planned)
                out.append(closed)
            return out

    # -- reading -----------------------------------------------------------------------------

    def balance(self, account: str) -> int:
        """An account's balance in micro-credits, summed from its entries."""
        rules.check_any_account(account)
        with self.engine.connect() as conn:
            return self._balance(conn, account)

    def statement(self, account: str, limit: int = 50) -> list[Line]:
        """The account's newest entries first (at most `limit`, 1-1000)."""
        rules.check_any_account(account)
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise LedgerInputInvalid(f"limit must be an integer from 1 to 1000; got {limit!r:.40}",
                                           param="limit")
        query = (select(entries).where((entries.c.debit == account) | (entries.c.credit == account))
                 .order_by(entries.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Line(r.id, r.created_at, Kind(r.kind), r.amount if r.credit == account else -r.amount,
                     r.debit if r.credit == account else r.credit, r.hold_id, r.op_key) for r in rows]

    def holds_of(self, requester: str, *, open_only: bool = True) -> list[Hold]:
        """A requester's holds, newest first (`hearth credits` shows the open ones)."""
        rules.check_account(requester, "requester")
        query = select(holds).where(holds.c.requester == requester).order_by(holds.c.created_at.desc())
        if open_only:
            query = query.where(holds.c.state == HoldState.OPEN.value)
        with self.engine.connect() as conn:
            return [_hold(r) for r in conn.execute(query)]

    def get_hold(self, hold_id: str) -> Hold | None:
        rules.check_hold_id(hold_id)
        with self.engine.connect() as conn:
            return self._hold(conn, hold_id)

    def balances(self) -> dict[str, int]:
        """Every account's balance (the operator's is minus the credits issued)."""
        with self.engine.connect() as conn:
            return _balances(conn)

    def audit(self) -> list[str]:
        """What is wrong with the books (`rules.audit`); empty when they are right. Run at start."""
        # one snapshot for balances and holds (PostgreSQL's default isolation gives one per statement)
        options = {"isolation_level": "REPEATABLE READ"} if self._pg else {}
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            return rules.audit(_balances(conn), [_hold(r) for r in conn.execute(select(holds))])

    # -- inside a transaction ----------------------------------------------------------------

    def _run(self, key: str, request: str, lock: Callable[[Connection], None] | None,
             body: Callable[[Connection], T], replay: Callable[[Connection, Row[Any]], T]) -> T:
        """Lock, then replay the key's first result or run `body`, in one transaction. A racing
        writer of the same key loses on the unique constraint and replays the winner's result."""
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    if lock is not None:
                        lock(conn)
                    return self._once(conn, key, request, body, replay)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _once(self, conn: Connection, key: str, request: str, body: Callable[[Connection], T],
              replay: Callable[[Connection, Row[Any]], T]) -> T:
        """Replay the key's first result or run `body`, in the caller's transaction. A key is
        spent by its entries, or by its `moves` row (an escrow move, which may have no entry)."""
        first: Row[Any] | None = conn.execute(
            select(entries).where(entries.c.op_key == key, entries.c.leg == 0)).first()
        if first is None:
            first = conn.execute(select(moves).where(moves.c.op_key == key)).first()
        if first is None:
            return body(conn)
        if first.request != request:
            raise KeyReused(f"Idempotency key {key!r} was used for another operation "
                            f"({first.request.split('|')[0]}); use a fresh key.", param="key")
        return replay(conn, first)

    def _ensure_account(self, conn: Connection, account: str) -> None:
        dialect_insert = postgresql.insert if self._pg else sqlite.insert
        conn.execute(dialect_insert(accounts).values(id=account, created_at=self.clock())
                     .on_conflict_do_nothing(index_elements=["id"]))

    def _lock_hold(self, hold_id: str) -> Callable[[Connection], None]:
        def lock(conn: Connection) -> None:
            conn.execute(select(holds.c.id).where(holds.c.id == hold_id).with_for_update())
        return lock

    def _balance(self, conn: Connection, account: str) -> int:
        incoming = select(func.coalesce(func.sum(entries.c.amount), 0)).where(entries.c.credit == account)
        outgoing = select(func.coalesce(func.sum(entries.c.amount), 0)).where(entries.c.debit == account)
        return int(conn.execute(incoming).scalar_one()) - int(conn.execute(outgoing).scalar_one())

    def _hold(self, conn: Connection, hold_id: str | None) -> Hold | None:
        row = conn.execute(select(holds).where(holds.c.id == hold_id)).first()
        return None if row is None else _hold(row)

    def _close(self, conn: Connection, hold: Hold) -> None:
        done = conn.execute(update(holds).where(holds.c.id == hold.id, holds.c.state == HoldState.OPEN.value)
                            .values(state=hold.state.value, closed_at=self.clock()))
        if done.rowcount != 1:  # the lock makes this impossible; refuse rather than pay twice
            raise HoldClosed(f"Hold {hold.id!r} closed while being settled.", param="hold_id")

    def _write(self, conn: Connection, key: str, request: str, planned: list[Entry]) -> None:
        now = self.clock()
        conn.execute(insert(entries), [
            {"op_key": key, "leg": leg, "request": request, "kind": e.kind.value, "debit": e.debit,
             "credit": e.credit, "amount": e.amount, "hold_id": e.hold_id, "created_at": now}
            for leg, e in enumerate(planned)])


def _balances(conn: Connection) -> dict[str, int]:
    """One statement, so one snapshot: on PostgreSQL (READ COMMITTED) two statements would see
    different moments, and a settlement landing between them would unbalance the sum."""
    legs = union_all(select(entries.c.credit.label("account"), entries.c.amount.label("amount")),
                     select(entries.c.debit.label("account"), (-entries.c.amount).label("amount"))).subquery()
    rows = conn.execute(select(legs.c.account, func.sum(legs.c.amount)).group_by(legs.c.account))
    return {account: int(total) for account, total in rows}


def _entry(row: Row[Any]) -> Entry:
    return Entry(Kind(row.kind), row.debit, row.credit, row.amount, row.hold_id)


def _hold(row: Row[Any]) -> Hold:
    return Hold(row.id, row.requester, row.amount, row.expires_at, HoldState(row.state))


def _gone(row: Row[Any]) -> Hold:
    raise AssertionError(f"entry {row.id} names hold {row.hold_id!r}, which is not in the holds table")
