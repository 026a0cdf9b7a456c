"""The coordinator's replay store: nonces of admitted signed requests, in its database.

`hearth.pairing.signed.Verifier` refuses a nonce it has seen within the signature window. In one
process's memory, several coordinators on one PostgreSQL would each keep their own, so a signed
request captured at one could be replayed at another. Here every process records a nonce with an
INSERT on its primary key: the second process to see it loses on the unique constraint and
refuses the request. Bounded: a nonce is kept until two signature windows after it was seen
(older signatures are refused by their time anyway), and rows past that are pruned at most once
a PRUNE_S by whichever process is admitting requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Column, Double, Engine, Index, String, Table, delete, insert
from sqlalchemy.exc import IntegrityError

from hearth.public_swarm.coordinator.tables import metadata

PRUNE_S = 10.0
"""How often a process deletes the nonces past their time."""

nonces = Table(
    "coordinator_nonces", metadata,
    Column("nonce", String(64), primary_key=True),
    Column("expires_at", Double, nullable=False),
    Index("ix_coordinator_nonces_expires", "expires_at"),
)
"""Nonces of signed requests admitted by any coordinator process (migration c0005)."""


class DbNonces:
    """A `signed.NonceStore` on the coordinator's database `engine` (its migrations run)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.clock = clock
        self._pruned = float("-inf")
        self._lock = threading.Lock()

    def remember(self, nonce: str, until: float, now: float) -> bool:
        if len(nonce) > 64:  # the Verifier checked it is 16 bytes of base64url; never trust that here
            return False
        self._prune(now)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(nonces).values(nonce=nonce, expires_at=until))
        except IntegrityError:
            return False
        return True

    def _prune(self, now: float) -> None:
        with self._lock:
            due = self.clock() - self._pruned >= PRUNE_S
            if due:
                self._pruned = self.clock()
        if due:
            with self.engine.begin() as conn:
                conn.execute(delete(nonces).where(nonces.c.expires_at < now))

    def count(self) -> int:
        """Nonces held now (tests: the table stays bounded)."""
        from sqlalchemy import func, select

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(nonces)).scalar_one())
