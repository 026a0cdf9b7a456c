"""Shared by the books' process tests: the invariants a coordinator's ledger must keep, read from
its database after (or while) real coordinator processes ran on it."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from hearth.public_swarm.coordinator import books_rules as B
from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator.job_rules import FINAL, Job
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.coordinator.jobs import _job
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.models import entries, holds
from hearth.public_swarm.ledger.rules import ESCROW_PREFIX, OPERATOR, HoldState


def no_balance_negative(ledger: Ledger) -> dict[str, int]:
    """Every balance but the operator's (minus the credits issued) is >= 0; the sum is 0, so the
    participants' balances (escrows included) sum to the credits issued. The balances."""
    balances = ledger.balances()
    negative = {a: b for a, b in balances.items() if a != OPERATOR and b < 0}
    assert negative == {}, negative
    assert sum(balances.values()) == 0, balances
    issued = -balances.get(OPERATOR, 0)
    assert sum(b for a, b in balances.items() if a != OPERATOR) == issued
    return balances


def all_jobs(ledger: Ledger) -> list[Job]:
    with ledger.engine.connect() as conn:
        return [_job(r) for r in conn.execute(select(jobs))]


def check_settled_once(ledger: Ledger, now: float) -> list[Job]:
    """The books after every job ended: the audit is clean, no balance negative, every job final and
    its hold closed by exactly one operation, the dispatcher's settlement (never an expiry), paying
    exactly what `books_rules.closing` says; no open hold past its expiry; no escrow holds credits."""
    assert ledger.audit() == []
    balances = no_balance_negative(ledger)
    assert {a: b for a, b in balances.items() if a.startswith(ESCROW_PREFIX) and b} == {}
    found = all_jobs(ledger)
    assert [j.id for j in found if j.state not in FINAL] == []
    with ledger.engine.connect() as conn:
        closing = conn.execute(select(entries.c.hold_id, entries.c.op_key, entries.c.kind, entries.c.credit,
                                      entries.c.amount).where(entries.c.kind != "hold")).all()
        open_holds = conn.execute(select(holds).where(holds.c.state == HoldState.OPEN.value)).all()
    assert [h.id for h in open_holds if h.expires_at <= now] == []
    keys: dict[str | None, set[str]] = {}
    paid: Counter[tuple[str | None, str]] = Counter()
    for hold_id, key, kind, credit, amount in closing:
        keys.setdefault(hold_id, set()).add(key)
        if kind == "settle":
            paid[(hold_id, credit)] += amount
    for job in found:
        assert job.hold_id is not None
        assert keys.get(job.hold_id) == {D.settle_key(job.id)}, (job.id, job.state, keys.get(job.hold_id))
        assert {w: paid[(job.hold_id, w)] for w in B.closing(job).paid} == B.closing(job).paid
        assert ledger.get_hold(job.hold_id).state is HoldState.SETTLED  # type: ignore[union-attr]
    return found
