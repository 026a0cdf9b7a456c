"""Shared by the trust tests: node ids, a clock, an open Trust on a fresh database, the ledger's
invariant, and (only until helper "scorer"'s `hearth.public_swarm.verify` is merged) a stand-in
for `verify.check_rate` with C5's shape, so `Standing.check_rate` can be called."""

from __future__ import annotations

import importlib.util
import sys
import types

from hearth.public_swarm.coordinator.trust import Trust
from hearth.public_swarm.coordinator.workers import upgrade
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.rules import OPERATOR
from tests.public_swarm.jobs_kit import Clock, node

__all__ = ["Clock", "node", "open_trust", "books_balanced", "install_verify_stand_in"]


def install_verify_stand_in() -> None:
    """C5's `check_rate(streak, failed)` shape: 0.25 with no streak, halving per 5 verified, down to
    0.02. Installed only when the real module is absent (it replaces nothing)."""
    if importlib.util.find_spec("hearth.public_swarm.verify") is not None:
        return
    stand_in = types.ModuleType("hearth.public_swarm.verify")
    stand_in.NEW_RATE = 0.25  # type: ignore[attr-defined]
    stand_in.MIN_RATE = 0.02  # type: ignore[attr-defined]
    stand_in.check_rate = lambda streak, failed: max(0.02, 0.25 / 2 ** (streak // 5))  # type: ignore[attr-defined]
    sys.modules["hearth.public_swarm.verify"] = stand_in


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
