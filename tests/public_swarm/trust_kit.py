"""Shared by the trust tests: node ids, a clock, an open Trust on a fresh database, the ledger's
invariant."""

from __future__ import annotations

from hearth.public_swarm.coordinator.trust import Trust
from hearth.public_swarm.coordinator.workers import upgrade
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.rules import OPERATOR
from tests.public_swarm.jobs_kit import Clock, node

__all__ = ["Clock", "node", "open_trust", "books_balanced"]


def open_trust(url: str, clock: Clock, references: tuple[str, ...] = ()) -> tuple[Ledger, Trust]:
    ledger = Ledger.open(url, clock=clock, pool_size=4)
    upgrade(ledger.engine)
    return ledger, Trust(ledger.engine, ledger, clock=clock, references=references)


def books_balanced(ledger: Ledger) -> dict[str, int]:
    """The ledger invariant: the audit is clean, nothing but the operator negative, the sum zero."""
    assert ledger.audit() == []
    balances = ledger.balances()
    assert {a: b for a, b in balances.items() if a != OPERATOR and b < 0} == {}
    assert sum(balances.values()) == 0
    return balances
