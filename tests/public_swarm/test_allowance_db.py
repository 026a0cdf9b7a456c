"""The free allowance in the coordinator's database, on SQLite and a real PostgreSQL 15."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, func, select

from hearth.public_swarm.coordinator import workers
from hearth.public_swarm.coordinator.allowance import Allowance, FreeAllowanceUsed, allowance
from hearth.public_swarm.coordinator.allowance_rules import DAY_S, AllowanceInputInvalid
from hearth.public_swarm.ledger.engine import make_engine
from hearth.public_swarm.ledger.engine import upgrade as ledger_upgrade


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def engine_at(url: str, pool_size: int = 5) -> Engine:
    engine = make_engine(url, pool_size=pool_size)
    ledger_upgrade(engine)
    workers.upgrade(engine)
    return engine


def rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(allowance)).scalar_one())


def test_take_give_back_and_the_daily_reset(ledger_url: str) -> None:
    engine = engine_at(ledger_url)
    clock = Clock(100 * DAY_S + 7200.0)
    a = Allowance(engine, tokens_per_day=1000, clock=clock)
    try:
        a.take("192.0.2.1", 600)
        a.take("2001:db8::1", 1000)
        with pytest.raises(FreeAllowanceUsed) as caught:
            a.take("192.0.2.1", 500)
        assert caught.value.left == 400 and caught.value.resets_at == 101 * DAY_S
        with pytest.raises(FreeAllowanceUsed):  # another address of the same /64
            a.take("2001:db8::ffff:1", 1)
        a.give_back("192.0.2.1", 300)
        assert a.left("192.0.2.1") == (700, 101 * DAY_S)
        a.take("192.0.2.1", 700)
        assert a.left("192.0.2.1")[0] == 0
        clock.t += DAY_S  # the next UTC day: whole again
        assert a.left("2001:db8::2") == (1000, 102 * DAY_S)
        a.give_back("192.0.2.1", 500)  # yesterday's tokens return nothing today
        a.take("192.0.2.1", 1000)
        clock.t += 2 * DAY_S
        a.take("192.0.2.2", 1)  # a process's first take of a day forgets rows from before yesterday
        assert rows(engine) == 1 and a.prune() == 0
    finally:
        engine.dispose()


def test_refusals_write_nothing(ledger_url: str) -> None:
    engine = engine_at(ledger_url)
    a = Allowance(engine, tokens_per_day=10)
    try:
        for address, tokens in [("not-an-ip", 1), ("192.0.2.1", 0), ("192.0.2.1", True), ("", 1)]:
            with pytest.raises(AllowanceInputInvalid):
                a.take(address, tokens)
        with pytest.raises(FreeAllowanceUsed):
            a.take("192.0.2.9", 11)
        assert rows(engine) == 0
    finally:
        engine.dispose()


def test_concurrent_takes_from_two_coordinators_never_overdraw(ledger_url: str) -> None:
    """Two engines (two coordinators' pools) × 8 threads take 7 tokens at a time from one address
    (and from other addresses of its /64) until refused: exactly the allowance's floor is taken."""
    per_day = 7 * 40 + 3
    engines = [engine_at(ledger_url, pool_size=8) for _ in range(2)]
    allowances = [Allowance(e, tokens_per_day=per_day) for e in engines]

    def grab(i: int) -> int:
        a, got = allowances[i % 2], 0
        while True:
            try:
                a.take(f"2001:db8:5:6::{i:x}", 7)
            except FreeAllowanceUsed:
                return got
            got += 7

    try:
        with ThreadPoolExecutor(16) as pool:
            taken = sum(pool.map(grab, range(16)))
        assert taken == 7 * 40
        assert allowances[0].left("2001:db8:5:6::1")[0] == 3
        assert rows(engines[0]) == 1
    finally:
        for e in engines:
            e.dispose()
