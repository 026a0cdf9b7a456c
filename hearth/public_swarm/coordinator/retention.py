"""The coordinator forgets finished jobs' prompts and outputs (issue 11; the rules: `retention_rules`).

Two ways in: `delivered(job_id)`, called by the routes once a done job's text reached its
requester (the OpenAI routes after the response, `GET /v1/jobs/{id}` of a final job), and
`sweep()`, on the dispatcher's timer, which forgets what the grace period and the result TTL say.
Forgetting blanks columns of the job's row (`text`, `token_ids`, the request's contents) and
never changes its state or `updated_at` (the end time the rules count from), so the books, the
wait estimate and audit read the row as before.

The sweep walks final jobs in end order past a cursor kept in this process (one cursor for the
grace period, one for the TTL, one for spot-checks decided after the grace period), a batch at a
time, so it does not re-read what it already forgot; a restarted process walks them once again
from the start, which changes nothing. Safe from several coordinator processes: each write is
guarded by the row's state and end time, and forgetting twice is forgetting once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, Row, and_, or_, select, update

from hearth.public_swarm.coordinator import retention_rules as P
from hearth.public_swarm.coordinator.job_rules import FINAL, JobState
from hearth.public_swarm.coordinator.job_tables import checks, jobs
from hearth.public_swarm.coordinator.jobs import JobQueue

log = logging.getLogger("hearth.coordinator.retention")

BATCH = 200
"""Jobs one sweep step reads at most per cursor."""
EVERY_S = 10.0
"""How often `sweep()` reads the database at most (the dispatcher calls it every SWEEP_S)."""
PENDING = "pending"
_FINAL = [s.value for s in FINAL]
_Row = Any
"""A row holding at least _COLUMNS (SQLAlchemy types a row by its column count)."""
_COLUMNS = (jobs.c.id, jobs.c.state, jobs.c.request, jobs.c.text, jobs.c.token_ids, jobs.c.updated_at)


class Retention:
    """Forgetting on the queue's database, with the queue's clock."""

    def __init__(self, queue: JobQueue, policy: P.Policy | None = None, *, every_s: float = EVERY_S) -> None:
        self.engine, self.clock = queue.engine, queue.clock
        self.policy = policy if policy is not None else P.Policy.from_env(os.environ)
        self.every_s = every_s
        self._cursors: dict[str, tuple[float, str]] = {
            name: (float("-inf"), "") for name in ("grace", "ttl", "decided")}
        self._last = float("-inf")
        self._pg = self.engine.dialect.name == "postgresql"

    def delivered(self, job_id: str) -> bool:
        """A done job's text reached its requester: forget it now (unless a spot-check of it is
        pending). Whether anything was forgotten; a job not done, or unknown, is left alone."""
        with self.engine.begin() as conn:
            query = select(*_COLUMNS).where(jobs.c.id == job_id)
            row = conn.execute(query.with_for_update() if self._pg else query).first()
            if row is None or row.state != JobState.DONE.value:
                return False
            held = _held(row, pending=_pending(conn, [row.id]))
            return self._apply(conn, row, P.on_delivery(held, self.policy, self.clock()))

    def sweep(self, now: float | None = None) -> int:
        """Forget what the policy says is due (at most every `every_s` unless `now` is given); the
        number of jobs changed."""
        at = self.clock() if now is None else now
        if now is None and at - self._last < self.every_s:
            return 0
        self._last = at
        changed = self._walk("grace", at - self.policy.grace_s, states=_FINAL, at=at)
        changed += self._walk("ttl", at - self.policy.ttl_s, states=[JobState.DONE.value], at=at)
        return changed + self._decided(at)

    def _decided(self, at: float) -> int:
        """One batch of jobs whose spot-check was decided after the grace walk passed them."""
        after, after_id = self._cursors["decided"]
        if at < after:
            after, after_id = float("-inf"), ""
        query = (select(*_COLUMNS, checks.c.decided_at, checks.c.id.label("check_id"))
                 .join(checks, checks.c.job_id == jobs.c.id)
                 .where(checks.c.outcome != PENDING, checks.c.decided_at <= at, jobs.c.state.in_(_FINAL),
                        jobs.c.updated_at <= at - self.policy.grace_s,
                        or_(checks.c.decided_at > after, and_(checks.c.decided_at == after, checks.c.id > after_id)))
                 .order_by(checks.c.decided_at, checks.c.id).limit(BATCH))
        rows, changed = self._forget_batch(query, at)
        if rows:
            self._cursors["decided"] = (rows[-1].decided_at, rows[-1].check_id)
        return changed

    def _forget_batch(self, query: Any, at: float) -> tuple[list[Row[Any]], int]:
        """Read one batch and forget in each row what the policy says, in one transaction; returns
        the rows read (the caller moves its cursor past them) and how many changed."""
        changed = 0
        with self.engine.begin() as conn:
            rows = list(conn.execute(query).all())
            pending = _pending(conn, [r.id for r in rows])
            for row in rows:
                changed += self._apply(conn, row, P.plan(_held(row, pending=pending), self.policy, at))
        return rows, changed

    def _walk(self, name: str, cutoff: float, *, states: Collection[str], at: float) -> int:
        """One batch of final jobs that ended after this cursor and by `cutoff`."""
        after, after_id = self._cursors[name]
        if cutoff < after:  # the clock stepped back: walk again from the start
            after, after_id = float("-inf"), ""
        query = (select(*_COLUMNS).where(jobs.c.state.in_(list(states)), jobs.c.updated_at <= cutoff,
                                         or_(jobs.c.updated_at > after,
                                             and_(jobs.c.updated_at == after, jobs.c.id > after_id)))
                 .order_by(jobs.c.updated_at, jobs.c.id).limit(BATCH))
        rows, changed = self._forget_batch(query, at)
        if rows:
            self._cursors[name] = (rows[-1].updated_at, rows[-1].id)
        if changed:
            log.info("retention: forgot the contents of %d finished job(s)", changed)
        return changed

    def _apply(self, conn: Connection, row: _Row, forget: P.Forget) -> bool:
        if not forget:
            return False
        spec = _spec(row.request)
        values: dict[str, Any] = {}
        if forget.text:
            values["text"] = ""
        if forget.prompt:
            spec = P.scrub(spec)
            values["token_ids"] = "[]"
        if forget.delivered:
            spec = P.mark_delivered(spec)
        if forget.prompt or forget.delivered:
            values["request"] = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        done = conn.execute(update(jobs).where(jobs.c.id == row.id, jobs.c.state == row.state,
                                               jobs.c.updated_at == row.updated_at).values(**values))
        return done.rowcount == 1


def _spec(text: str) -> dict[str, Any]:
    try:
        spec = json.loads(text)
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _held(row: _Row, *, pending: Collection[str]) -> P.Held:
    spec = _spec(row.request)
    return P.Held(done=row.state == JobState.DONE.value, ended_at=float(row.updated_at), has_text=bool(row.text),
                  has_prompt=not spec.get(P.FORGOTTEN) or row.token_ids not in ("", "[]"),
                  delivered=bool(spec.get(P.DELIVERED)), checking=row.id in pending)


def _pending(conn: Connection, job_ids: list[str]) -> set[str]:
    """Which of these jobs have a spot-check still pending (`coordinator_checks`)."""
    if not job_ids:
        return set()
    query = select(checks.c.job_id).where(checks.c.job_id.in_(job_ids), checks.c.outcome == PENDING)
    return set(conn.execute(query).scalars())
