"""A job's books on the ledger: closing them once a job is final, and the sweep that closes those a
dead coordinator left open (`books_rules` says what; this module reads and writes).

Every coordinator process runs `Books.sweep` at start (before it expires any hold: a job that was
done when its coordinator died is settled, not refunded) and on its timer. Safe from several
processes at once: settling replays under the dispatcher's own ledger key, so a job is paid once
whoever gets there first; dropping a job is a guarded queue write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import or_, select

from hearth.errors import HearthError
from hearth.public_swarm.coordinator import books_rules as B
from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator.job_rules import FINAL, Job, JobRefused, JobState
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.coordinator.jobs import JobQueue, _job
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.errors import KeyReused, LedgerRefused
from hearth.public_swarm.ledger.models import holds
from hearth.public_swarm.ledger.rules import Hold, HoldState

log = logging.getLogger("hearth.coordinator.books")

SWEEP_BATCH = 500
"""Jobs one sweep looks at at most (the next sweep takes the rest)."""


class GiveBack(Protocol):
    def give_back(self, address: str, tokens: int) -> None: ...


@dataclass(frozen=True)
class Swept:
    settled: tuple[str, ...]
    """Final jobs whose open hold this sweep closed."""
    dropped: tuple[str, ...]
    """Queued or running jobs cancelled because their hold was gone."""
    expired: int
    """Holds returned to their requesters (past expiry, no job settled them)."""


def _own(worker: str) -> str:
    return worker


class Books:
    """Closing jobs' books on `ledger` (free-tier allowances given back to `allowance`). Each
    worker's part is paid to `payee(worker)`: the worker's own account, or its vesting account while
    its earnings sit in escrow (`trust.Trust.payee`)."""

    def __init__(self, ledger: Ledger, queue: JobQueue, allowance: GiveBack | None = None, *,
                 payee: Callable[[str], str] = _own) -> None:
        self.ledger, self.queue, self.allowance, self.payee = ledger, queue, allowance, payee

    def close(self, job: Job) -> None:
        """Settle a final job once (ledger keys from the job id): the requester pays for what was
        delivered, each worker is paid its part (to its payee), the rest returns. A free job's
        workers are paid by the operator and the unused allowance goes back (call that part once
        per job). A retry after a worker's payee changed (it vested meanwhile) finds the key spent
        with the other payee: the job was paid once, so that is logged, not raised."""
        plan = B.closing(job)
        try:
            if plan.hold_id is not None:
                self.ledger.settle_split(plan.hold_id, B.paid_to(plan.paid, self.payee), plan.key)
                return
            for worker, amount in sorted(plan.paid.items()):
                try:
                    self.ledger.grant(self.payee(worker), amount, D.pay_key(job.id, worker))
                except KeyReused:
                    log.info("job %s: %s was paid already (to its other account)", job.id, worker)
            if plan.free_address is not None and self.allowance is not None and plan.give_back > 0:
                self.allowance.give_back(plan.free_address, plan.give_back)
        except LedgerRefused as exc:  # e.g. the hold expired: the requester was refunded already
            log.warning("job %s: could not settle: %s", job.id, exc.message)
        except KeyReused:
            hold = self.ledger.get_hold(plan.hold_id) if plan.hold_id is not None else None
            if hold is None or hold.state is HoldState.OPEN:
                raise
            log.info("job %s: settled already (a worker's payee changed since)", job.id)

    def pending(self, now: float, limit: int = SWEEP_BATCH) -> list[tuple[Job, Hold]]:
        """Jobs with a hold whose books need the sweep: final with the hold open, or not final with
        the hold closed or past expiry (the open holds and the unfinished jobs are the few rows)."""
        both = select(jobs, *[c.label(f"h_{c.name}") for c in holds.c]).join(holds, holds.c.id == jobs.c.hold_id)
        # Two queries, not one OR: each starts from the few rows (open holds; unfinished jobs), so the
        # sweep does not read every finished job ever, every few seconds, in every process.
        left_open = both.where(holds.c.state == HoldState.OPEN.value, jobs.c.state.in_([s.value for s in FINAL]))
        unpayable = both.where(jobs.c.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
                               or_(holds.c.state != HoldState.OPEN.value, holds.c.expires_at <= now))
        with self.ledger.engine.connect() as conn:
            rows = [*conn.execute(left_open.order_by(jobs.c.updated_at).limit(limit)),
                    *conn.execute(unpayable.order_by(jobs.c.updated_at).limit(limit))]
        rows.sort(key=lambda row: row.updated_at)
        return [(_job(row), _hold_of(row)) for row in rows[:limit]]

    def sweep(self, now: float | None = None) -> Swept:
        """Close what dead coordinators left open, then expire holds past their time."""
        now = self.ledger.clock() if now is None else now
        plan = B.plan_sweep(self.pending(now), now)
        settled, dropped = [], []
        for job in plan.settle:
            try:
                self.close(job)
            except HearthError as exc:  # e.g. a stored request this build cannot read: the others still close
                log.error("job %s: books not closed: %s", job.id, exc.message)
                continue
            settled.append(job.id)
        for job in plan.drop:
            try:
                moved = self.queue.drop(job.id, B.DROP_REASON)
            except JobRefused as exc:  # changed meanwhile (finished elsewhere): the next sweep sees it
                log.info("job %s: not dropped: %s", job.id, exc.message)
                continue
            if moved.state is JobState.CANCELLED and moved.error == B.DROP_REASON:
                dropped.append(job.id)
        expired = len(self.ledger.expire_holds(now))
        if settled or dropped:
            log.info("books sweep: settled %d job(s) left open, dropped %d unpayable", len(settled), len(dropped))
        return Swept(tuple(settled), tuple(dropped), expired)


def _hold_of(row: Any) -> Hold:
    m = row._mapping
    return Hold(m["h_id"], m["h_requester"], m["h_amount"], m["h_expires_at"], HoldState(m["h_state"]))
