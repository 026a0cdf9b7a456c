"""Workers' standing on the coordinator's database (`coordinator_trust`, `coordinator_checks`,
migration c0006): `trust_rules` decides, this module reads, locks and writes.

Each method is one transaction that locks the rows it changes (`SELECT … FOR UPDATE` on
PostgreSQL; SQLite's `BEGIN IMMEDIATE` serialises writers), so several coordinator processes on
one database agree. The ledger move a transition asks for (vest or forfeit the worker's escrow)
runs inside the same transaction (`Ledger.vest(..., conn=)`), keyed by the check or the escrow
period it closes, so a standing and its credits never disagree, even after a crash.

`decide` applies a check's outcome exactly once: the check's row moves from 'pending' once, under
its lock; a second caller (another process, a retry) finds it decided and gets None.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from hearth.public_swarm.coordinator import trust_rules as R
from hearth.public_swarm.coordinator.job_tables import checks, trust
from hearth.public_swarm.coordinator.trust_rules import (
    CheckConflict,
    CheckNotFound,
    Move,
    Standing,
    TrustInputInvalid,
    TrustState,
    WorkerUnknown,
)
from hearth.public_swarm.ledger import rules as L
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.models import entries

log = logging.getLogger("hearth.coordinator.trust")

SWEEP_BATCH = 500
"""Workers one sweep changes at most (the next sweep takes the rest)."""
MAX_LOOKUP = 1000
"""Node ids one `standings` call reads at most."""
PENDING, PASSED, FAILED = "pending", "passed", "failed"
_JOB_ID = re.compile(r"[a-z0-9]{8,64}")


class Trust:
    """Workers' standing on `engine` (the coordinator's database), with their escrow on `ledger`.
    `references`: node ids of the operator's own workers (trusted, never escrowed or checked)."""

    def __init__(self, engine: Engine, ledger: Ledger, *, clock: Callable[[], float] = time.time,
                 references: Collection[str] = ()) -> None:
        self.engine, self.ledger, self.clock = engine, ledger, clock
        self.references = frozenset(R.check_node_id(r, "references") for r in references)
        self._pg = engine.dialect.name == "postgresql"

    # -- links and jobs ---------------------------------------------------------------------

    def seen(self, node_id: str, address: str) -> Standing:
        """A worker linked from `address`: create its standing (new, escrow starting now; a
        reference: trusted) or refresh its owner. Two processes creating it at once: one inserts,
        the other refreshes."""
        owner = R.owner_of(node_id, address)
        reference = node_id in self.references
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    now = self.clock()
                    before = self._lock(conn, node_id)
                    if before is None:
                        made = R.new_standing(node_id, owner, now, reference=reference)
                        conn.execute(insert(trust).values(**_columns(made), updated_at=now))
                        return made
                    after = R.after_seen(before, owner, now, reference=reference)
                    self._move(conn, node_id, R.after_seen_move(before, after), f"trust-{node_id}-reference-{_ms(now)}")
                    return self._write(conn, before, after)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def standing(self, node_id: str) -> Standing | None:
        R.check_node_id(node_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(trust).where(trust.c.node_id == node_id)).first()
        return None if row is None else _standing(row)

    def standings(self, node_ids: Iterable[str]) -> dict[str, Standing]:
        """The standings of these workers (those with none are left out), at most `MAX_LOOKUP`."""
        wanted = sorted({R.check_node_id(n) for n in node_ids})
        if len(wanted) > MAX_LOOKUP:
            raise TrustInputInvalid(f"at most {MAX_LOOKUP} node ids at once; got {len(wanted)}", param="node_ids")
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            return {r.node_id: _standing(r) for r in conn.execute(select(trust).where(trust.c.node_id.in_(wanted)))}

    def finished(self, node_id: str) -> None:
        """A user job the worker finished."""
        self._apply(node_id, lambda s, now: R.after_job(s, now))

    def aborted(self, node_id: str) -> None:
        """A job the worker failed or lost (a suspicion too when it aborts too many)."""
        self._apply(node_id, lambda s, now: R.after_abort(s, now))

    def suspect(self, node_id: str, reason: str) -> Standing:
        """A suspicion (`trust_rules.too_fast`, ...): the streak starts again. A reason starting with
        `RECEIPT_MISMATCH` or `COUNT_MISMATCH` is proof, not suspicion: it counts as a failed check
        (recorded as a decided check row, so it counts towards a quarantine)."""
        reason = R.check_reason(reason)
        if not R.counts_as_failure(reason):
            return self._apply(node_id, lambda s, now: R.after_suspicion(s, now))
        R.check_node_id(node_id)
        check_id = f"mismatch-{secrets.token_hex(12)}"
        with self.engine.begin() as conn:
            now = self.clock()
            before = self._lock(conn, node_id)
            if before is None:
                raise WorkerUnknown(f"No standing for worker {node_id}.", param="node_id")
            conn.execute(insert(checks).values(id=check_id, job_id="-", worker=node_id, verifier=None,
                                               outcome=FAILED, reason=reason, created_at=now, decided_at=now))
            return self._fail(conn, before, check_id, now)

    # -- spot-checks --------------------------------------------------------------------------

    def open_check(self, check_id: str, job_id: str, worker: str) -> None:
        """Record a pending spot-check of `worker`'s job `job_id`. Again with the same arguments:
        nothing written; with others: CheckConflict."""
        R.check_check_id(check_id)
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise TrustInputInvalid(f"job_id must be 8-64 characters of a-z, 0-9; got {job_id!r:.80}", param="job_id")
        R.check_node_id(worker, "worker")
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    if self._lock(conn, worker) is None:
                        raise WorkerUnknown(f"No standing for worker {worker}.", param="worker")
                    row = conn.execute(select(checks).where(checks.c.id == check_id)).first()
                    if row is not None:
                        if (row.job_id, row.worker) != (job_id, worker):
                            raise CheckConflict(f"Check {check_id!r} is open for job {row.job_id} of "
                                                f"{row.worker}, not job {job_id} of {worker}.", param="check_id")
                        return
                    conn.execute(insert(checks).values(id=check_id, job_id=job_id, worker=worker, outcome=PENDING,
                                                       created_at=self.clock()))
                    return
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def decide(self, check_id: str, verifier: str, ok: bool, reason: str) -> Standing | None:
        """Apply a check's outcome to the checked worker, once: passing may vest its escrow,
        failing forfeits it and may quarantine the worker (`trust_rules`). None when the check was
        decided already (by this or another process)."""
        R.check_check_id(check_id)
        R.check_node_id(verifier, "verifier")
        if not isinstance(ok, bool):
            raise TrustInputInvalid(f"ok must be true or false; got {ok!r:.40}", param="ok")
        reason = R.check_reason(reason)
        with self.engine.begin() as conn:
            row = conn.execute(select(checks).where(checks.c.id == check_id).with_for_update()).first()
            if row is None:
                raise CheckNotFound(f"No spot-check {check_id!r}.", param="check_id")
            if row.outcome != PENDING:
                return None
            if verifier == row.worker:
                raise TrustInputInvalid("A worker cannot verify its own job.", param="verifier")
            now = self.clock()
            before = self._lock(conn, row.worker)
            if before is None:
                raise WorkerUnknown(f"No standing for worker {row.worker}.", param="worker")
            done = conn.execute(update(checks).where(checks.c.id == check_id, checks.c.outcome == PENDING)
                                .values(outcome=PASSED if ok else FAILED, verifier=verifier, reason=reason or None,
                                        decided_at=now))
            if done.rowcount != 1:  # the lock makes this impossible; apply nothing rather than twice
                return None
            if not ok:
                return self._fail(conn, before, check_id, now)
            step = R.after_verified(before, now)
            self._move(conn, before.node_id, step.move, f"check-{check_id}-vest")
            return self._write(conn, before, step.standing)

    # -- money and time ---------------------------------------------------------------------

    def payee(self, node_id: str) -> str:
        """The ledger account the worker's earnings go to now: its vesting account while in escrow
        (and for a worker with no standing yet: unknown is not trusted), else its own."""
        s = self.standing(node_id)
        if s is not None and not s.in_escrow(self.clock()):
            return node_id
        return L.vesting_account(node_id)

    def sweep(self) -> None:
        """Vest escrows whose period passed (`ESCROW_MAX_S` without failure) and lift ended
        quarantines, for up to `SWEEP_BATCH` workers. Safe from several processes at once: rows are
        locked (skipped when another process holds them) and each move is keyed by its period."""
        with self.engine.begin() as conn:
            now = self.clock()
            query = (select(trust).where(
                ((trust.c.state == TrustState.QUARANTINED.value) & (trust.c.quarantined_until <= now))
                | ((trust.c.state != TrustState.QUARANTINED.value) & (trust.c.escrow_since <= now - R.ESCROW_MAX_S)))
                .order_by(trust.c.updated_at).limit(SWEEP_BATCH))
            if self._pg:
                query = query.with_for_update(skip_locked=True)
            for row in conn.execute(query).all():
                before = _standing(row)
                step = R.after_time(before, now)
                if step.standing == before:
                    continue
                period = _ms(before.escrow_since) if before.escrow_since is not None else "none"
                self._move(conn, before.node_id, step.move, f"trust-{before.node_id}-period-{period}")
                self._write(conn, before, step.standing)
                if step.move is Move.VEST:
                    log.info("worker %s: escrow vested after %.0f s", before.node_id, R.ESCROW_MAX_S)

    def summary(self, node_id: str) -> dict[str, Any]:
        """Counts for the operator's page (never contents): jobs, checks, state, and micro-credits
        escrowed now, vested and forfeited so far."""
        s = self.standing(node_id)
        if s is None:
            raise WorkerUnknown(f"No standing for worker {node_id}.", param="node_id")
        escrow = L.vesting_account(node_id)
        with self.engine.connect() as conn:
            moved = dict(conn.execute(select(entries.c.kind, func.coalesce(func.sum(entries.c.amount), 0))
                                      .where(entries.c.debit == escrow).group_by(entries.c.kind)).all())
        now = self.clock()
        return {"node_id": node_id, "state": s.state.value, "reference": s.reference, "jobs": s.jobs,
                "verified": s.verified, "failed": s.failed, "streak": s.streak, "aborted": s.aborted,
                "suspicions": s.suspicions, "check_rate": s.check_rate(), "may_serve": s.may_serve(now),
                "escrow_since": s.escrow_since, "quarantined_until": s.quarantined_until,
                "escrowed": self.ledger.balance(escrow), "vested": int(moved.get(L.Kind.VEST.value, 0)),
                "forfeited": int(moved.get(L.Kind.FORFEIT.value, 0))}

    # -- inside a transaction -----------------------------------------------------------------

    def _apply(self, node_id: str, change: Callable[[Standing, float], Standing]) -> Standing:
        R.check_node_id(node_id)
        with self.engine.begin() as conn:
            before = self._lock(conn, node_id)
            if before is None:
                raise WorkerUnknown(f"No standing for worker {node_id}: it never linked here.", param="node_id")
            return self._write(conn, before, change(before, self.clock()))

    def _fail(self, conn: Connection, before: Standing, check_id: str, now: float) -> Standing:
        """A failure (the check row is written already): forfeit, count, maybe quarantine."""
        recent = int(conn.execute(select(func.count()).select_from(checks).where(
            checks.c.worker == before.node_id, checks.c.outcome == FAILED, checks.c.id != check_id,
            checks.c.decided_at >= now - R.FAILURE_WINDOW_S)).scalar_one())
        step = R.after_failed(before, now, recent)
        self._move(conn, before.node_id, step.move, f"check-{check_id}-forfeit")
        if step.standing.state is TrustState.QUARANTINED and before.state is not TrustState.QUARANTINED:
            log.warning("worker %s quarantined until %.0f: %d failures", before.node_id,
                        step.standing.quarantined_until or 0, recent + 1)
        return self._write(conn, before, step.standing)

    def _lock(self, conn: Connection, node_id: str) -> Standing | None:
        row = conn.execute(select(trust).where(trust.c.node_id == node_id).with_for_update()).first()
        return None if row is None else _standing(row)

    def _move(self, conn: Connection, node_id: str, move: Move, key: str) -> None:
        if move is Move.VEST:
            self.ledger.vest(node_id, key, conn=conn)
        elif move is Move.FORFEIT:
            self.ledger.forfeit(node_id, key, conn=conn)

    def _write(self, conn: Connection, before: Standing, after: Standing) -> Standing:
        if after != before:
            conn.execute(update(trust).where(trust.c.node_id == before.node_id)
                         .values(**_columns(after), updated_at=self.clock()))
        return after


def _columns(s: Standing) -> dict[str, Any]:
    return {"node_id": s.node_id, "owner": s.owner, "state": s.state.value, "reference": s.reference,
            "jobs": s.jobs, "verified": s.verified, "failed": s.failed, "streak": s.streak, "aborted": s.aborted,
            "suspicions": s.suspicions, "escrow_since": s.escrow_since, "quarantined_until": s.quarantined_until,
            "first_seen": s.first_seen}


def _standing(row: Row[Any]) -> Standing:
    return Standing(row.node_id, row.owner, TrustState(row.state), bool(row.reference), row.jobs, row.verified,
                    row.failed, row.streak, row.aborted, row.suspicions, row.escrow_since, row.quarantined_until,
                    row.first_seen)


def _ms(at: float) -> int:
    return int(at * 1000)
