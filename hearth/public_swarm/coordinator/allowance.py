"""The anonymous free allowance (issue 10, contract C3): a daily budget of tokens per client
address, kept in the coordinator's database so every coordinator process on one PostgreSQL
draws on the same budget.

Unsigned requests are paid from it: `take(address, tokens)` before a job is queued (its prompt
cap plus max_tokens), `give_back(address, tokens)` for the part a job did not use once it ends.
The rules (which key an address counts under, the UTC day, the arithmetic) are
`allowance_rules`, pure; this module is one guarded statement per operation, so concurrent takes
never overdraw: the UPDATE's WHERE re-checks the budget against the row as it is when the write
lands (PostgreSQL re-reads a row a concurrent transaction changed; SQLite's BEGIN IMMEDIATE makes
writers take turns).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    String,
    Table,
    case,
    delete,
    insert,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

from hearth.public_swarm.coordinator import allowance_rules as R
from hearth.public_swarm.coordinator.allowance_rules import FreeAllowanceUsed, Usage
from hearth.public_swarm.coordinator.tables import metadata

__all__ = ["Allowance", "FreeAllowanceUsed"]
ATTEMPTS = 3
"""Tries of one take when a concurrent first take or give-back of the same address lands between
its statements (each try is one short transaction)."""

allowance = Table(
    "coordinator_allowance", metadata,
    Column("address", String(64), primary_key=True),
    Column("day", Integer, nullable=False),
    Column("used", BigInteger, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_coordinator_allowance_day", "day"),
)
"""One row per address key (migration c0004): tokens `used` on UTC `day`; a row of an earlier
day counts nothing and is reset by the next take."""


class Allowance:
    """The free allowance on `engine` (the ledger's, coordinator migrations run). Thread-safe."""

    def __init__(self, engine: Engine, *, tokens_per_day: int = R.TOKENS_PER_DAY,
                 clock: Callable[[], float] = time.time, scope: str = "") -> None:
        """`scope` keeps another daily budget per address in the same table (e.g. "welcome": how
        many new identities an address may have welcomed per day); "" is the token allowance."""
        self.engine = engine
        self.scope = scope
        self.tokens_per_day = R.check_per_day(tokens_per_day)
        self.clock = clock
        self._pruned_day: int | None = None

    def take(self, address: str, tokens: int) -> None:
        """Use `tokens` of `address`'s allowance today, or raise FreeAllowanceUsed (429, says what
        is left and when it resets); nothing is taken on a refusal."""
        key = self._key(address)
        R.check_tokens(tokens)
        if self._pruned_day != R.day_of(self.clock()):  # once a day per process: old rows go
            self._pruned_day = R.day_of(self.clock())
            self.prune()
        for attempt in range(ATTEMPTS):
            now = self.clock()
            today = R.day_of(now)
            used_today = case((allowance.c.day == today, allowance.c.used), else_=0)
            try:
                with self.engine.begin() as conn:
                    done = conn.execute(sql_update(allowance).where(
                        allowance.c.address == key, used_today + tokens <= self.tokens_per_day,
                    ).values(used=used_today + tokens, day=today, updated_at=now))
                    if done.rowcount == 1:
                        return
                    usage = self._usage(conn, key)
                    taken = R.plan_take(usage, tokens, today, self.tokens_per_day, now)  # raises when over
                    if usage is not None:  # it fits now: a concurrent give_back landed in between
                        continue
                    conn.execute(insert(allowance).values(address=key, day=taken.day, used=taken.used,
                                                          updated_at=now))
                    return
            except IntegrityError:  # a concurrent first take of this address made the row: go again
                if attempt == ATTEMPTS - 1:
                    raise
        raise FreeAllowanceUsed(f"The free allowance of {address!r:.60} changed while being taken; retry.",
                                left=0, resets_at=R.resets_at(R.day_of(self.clock())), now=self.clock())

    def give_back(self, address: str, tokens: int) -> None:
        """Return `tokens` a job took but did not use (same UTC day only; see plan_give_back)."""
        key = self._key(address)
        R.check_tokens(tokens)
        now = self.clock()
        today = R.day_of(now)
        with self.engine.begin() as conn:
            conn.execute(sql_update(allowance).where(allowance.c.address == key, allowance.c.day == today).values(
                used=case((allowance.c.used > tokens, allowance.c.used - tokens), else_=0), updated_at=now))

    def left(self, address: str) -> tuple[int, int]:
        """(tokens left today, when the allowance resets in epoch seconds) for `address`."""
        key = self._key(address)
        today = R.day_of(self.clock())
        with self.engine.connect() as conn:
            usage = self._usage(conn, key)
        return R.left_today(usage, today, self.tokens_per_day), R.resets_at(today)

    def prune(self) -> int:
        """Forget rows from before yesterday (they count nothing, whatever their scope); how many.
        Keeps the table to the addresses seen lately."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(allowance).where(allowance.c.day < R.day_of(self.clock()) - 1)).rowcount)

    def _key(self, address: str) -> str:
        key = R.client_key(address)
        return f"{self.scope}:{key}" if self.scope else key

    @staticmethod
    def _usage(conn: Connection, key: str) -> Usage | None:
        row = conn.execute(select(allowance.c.day, allowance.c.used).where(allowance.c.address == key)).first()
        return None if row is None else Usage(int(row.day), int(row.used))
