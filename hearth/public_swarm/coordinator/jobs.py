"""The coordinator's durable job queue (issue 10), on the ledger's database.

Jobs live in `coordinator_jobs` (`job_tables`, migration c0002), so they survive a coordinator
restart, and several coordinator processes on one PostgreSQL share one queue: a claim takes the
oldest queued job of the worker's models with `SELECT … FOR UPDATE SKIP LOCKED`, so two claims
never take one job and never wait for each other. On SQLite (one coordinator) the engine begins
every transaction with `BEGIN IMMEDIATE` (`ledger.engine.make_engine`), so writers take turns.

Each operation is one transaction: read (and lock) the job's row, ask `job_rules` what changes,
write it with a guard on the state it read. Retries are safe: `submit` by the requester's key,
`claim` by an optional claim key, `progress` by carrying the whole stream so far, `finish`,
`fail` and `cancel` by being no-ops when already done.

Used by (later sessions): the HTTP jobs API (`POST /v1/jobs` -> submit, `GET` -> get/position,
list_for, cancel), the worker link (claim, progress, finish, fail), and a timer in every
coordinator process (requeue_expired), which moves a job whose worker stopped renewing its lease
back to the queue, with what it streamed kept, so another worker of the same model resumes it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, Row, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from hearth.public_swarm.coordinator import claim_rules as C
from hearth.public_swarm.coordinator import job_rules as R
from hearth.public_swarm.coordinator.job_rules import Job, JobState
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.coordinator.workers import upgrade
from hearth.public_swarm.ledger.engine import make_engine
from hearth.public_swarm.ledger.engine import upgrade as ledger_upgrade
from hearth.public_swarm.ledger.errors import KeyReused

T = TypeVar("T")
LEASE_S = 30.0
"""A claimed job's lease: the worker must report progress within it or lose the job."""
REQUEUE_BATCH = 500
"""Jobs one `requeue_expired` transaction moves at most (call it again for more)."""


class JobQueue:
    """The queue on `engine` (the ledger's: `ledger.engine.make_engine`, and the coordinator's
    migrations run: `workers.upgrade`). Thread-safe: each call takes its own pooled connection."""

    def __init__(self, engine: Engine, *, max_attempts: int = R.MAX_ATTEMPTS,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.max_attempts = R.check_attempts(max_attempts)
        self.clock = clock
        self._pg = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str, *, max_attempts: int = R.MAX_ATTEMPTS, clock: Callable[[], float] = time.time,
             pool_size: int = 10) -> JobQueue:
        """Connect to `url` (as `Ledger.open`) and migrate the ledger's and the coordinator's tables.
        The coordinator process shares one engine instead: `JobQueue(ledger.engine)`."""
        engine = make_engine(url, pool_size=pool_size)
        ledger_upgrade(engine)
        upgrade(engine)
        return cls(engine, max_attempts=max_attempts, clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requesters ---------------------------------------------------------------------------

    def submit(self, requester: str, key: str, digest: str, request: dict[str, Any], max_tokens: int,
               hold_id: str | None = None, *, purpose: str = "user", target: str | None = None,
               avoid: Collection[str] = (), avoid_owner: str | None = None, parent: str | None = None,
               verified_only: bool = False) -> Job:
        """Queue a job for the model `digest`, paid by the ledger hold `hold_id` (stored, not
        checked: the caller holds the credits first). The same `key` from the same requester
        returns the first job; with other arguments it raises `KeyReused`. The keywords say who
        may claim it (`claim_rules`)."""
        R.check_requester(requester)
        R.check_key(key)
        R.check_digest(digest)
        body = R.encode_request(request)
        R.check_max_tokens(max_tokens)
        R.check_hold_id(hold_id)
        route = C.check_routing(purpose, target, avoid, avoid_owner, parent, verified_only)
        fp = hashlib.sha256((R.fingerprint(digest, body, max_tokens, hold_id)
                             + route.fingerprint_part()).encode()).hexdigest()
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(select(jobs).where(jobs.c.requester == requester,
                                                          jobs.c.submit_key == key)).first()
                    if row is not None:
                        if row.fingerprint != fp:
                            raise KeyReused(f"Idempotency key {key!r} was used for another job; use a fresh key.",
                                            param="key")
                        return _job(row)
                    now = self.clock()
                    job_id = secrets.token_hex(12)
                    conn.execute(insert(jobs).values(
                        id=job_id, requester=requester, submit_key=key, fingerprint=fp, digest=digest,
                        request=body, max_tokens=max_tokens, hold_id=hold_id, state=JobState.QUEUED.value,
                        attempts=0, text="", tokens=0, created_at=now, updated_at=now, token_ids="[]", parts="[]",
                        purpose=route.purpose, target=route.target, avoid=json.dumps(list(route.avoid)),
                        avoid_owner=route.avoid_owner, parent=route.parent, verified_only=route.verified_only))
                    return _job(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())
            except IntegrityError:  # a racing submit of the same key won: replay it
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def cancel(self, job_id: str, requester: str) -> Job:
        """Drop a queued or running job (its worker's next report is refused). The caller releases
        or settles the hold for what was streamed."""
        R.check_job_id(job_id)
        R.check_requester(requester)
        return self._change(job_id, lambda job, now: R.plan_cancel(job, requester, now))

    def drop(self, job_id: str, reason: str) -> Job:
        """Cancel a queued or running job for the coordinator (its hold expired: nobody would pay
        for it); a final job is returned unchanged. The caller closes its books."""
        R.check_job_id(job_id)
        R.check_text(reason, "reason", R.MAX_REASON_CHARS)
        return self._change(job_id, lambda job, now: R.plan_drop(job, reason, now))

    def get(self, job_id: str) -> Job | None:
        R.check_job_id(job_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return None if row is None else _job(row)

    def position(self, job_id: str) -> int | None:
        """How many queued jobs of the same model are ahead of this one (0: next), or None when it
        is not queued. Claims take the oldest first, so this is its place in line."""
        R.check_job_id(job_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs.c.state, jobs.c.digest, jobs.c.created_at)
                               .where(jobs.c.id == job_id)).first()
            if row is None:
                raise R.JobNotFound(f"No job {job_id!r}.", param="job_id")
            if row.state != JobState.QUEUED.value:
                return None
            ahead = ((jobs.c.created_at < row.created_at)
                     | ((jobs.c.created_at == row.created_at) & (jobs.c.id < job_id)))
            return int(conn.execute(select(func.count()).select_from(jobs).where(
                jobs.c.state == JobState.QUEUED.value, jobs.c.digest == row.digest, ahead)).scalar_one())

    def list_for(self, requester: str, *, state: str | None = None, limit: int = 50) -> list[Job]:
        """A requester's jobs, newest first (optionally only those in `state`)."""
        R.check_requester(requester)
        R.check_limit(limit)
        query = select(jobs).where(jobs.c.requester == requester)
        if state is not None:
            query = query.where(jobs.c.state == R.check_state(state).value)
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_job(r) for r in conn.execute(query)]

    def active_count(self, requester: str, *, besides_key: str | None = None) -> int:
        """The requester's jobs queued or running now (for the limit on jobs at once), not counting
        the one submitted with `besides_key` (a retried submit is not one more job)."""
        R.check_requester(requester)
        query = select(func.count()).select_from(jobs).where(
            jobs.c.requester == requester, jobs.c.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]))
        if besides_key is not None:
            query = query.where(jobs.c.submit_key != besides_key)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def counts(self) -> dict[JobState, int]:
        """Requesters' jobs per state (for the health page; spot-checks and canaries are not counted)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.state, func.count()).where(jobs.c.purpose == "user")
                                .group_by(jobs.c.state)).all()
        out = dict.fromkeys(JobState, 0)
        out.update({JobState(s): int(n) for s, n in rows})
        return out

    # -- workers ------------------------------------------------------------------------------

    def claim(self, worker_id: str, digests: Collection[str], lease_s: float = LEASE_S,
              key: str | None = None, *, owner: str | None = None, trusted: bool = False) -> Job | None:
        """Take the oldest queued job of one of `digests` (models the worker holds) that this worker
        (of `owner`; `trusted` or not) may claim (`claim_rules.may_claim`), running on `worker_id`
        until `now + lease_s`; None when there is none. With `key`, a retried claim returns the
        job the first one took (while it still runs on this worker)."""
        R.check_worker_id(worker_id)
        wanted = R.check_digests(digests)
        lease_s = R.check_seconds(lease_s, "lease_s")
        if key is not None:
            R.check_key(key)
        if owner is not None:
            C.check_owner(owner)
        if type(trusted) is not bool:
            raise R.JobInputInvalid(f"trusted must be true or false; got {trusted!r:.40}", param="trusted")
        with self.engine.begin() as conn:
            if key is not None:
                row = conn.execute(select(jobs).where(jobs.c.claim_key == key, jobs.c.worker_id == worker_id,
                                                      jobs.c.state == JobState.RUNNING.value)).first()
                if row is not None:
                    return _job(row)
            query = (select(jobs.c.id).where(jobs.c.state == JobState.QUEUED.value, jobs.c.digest.in_(wanted),
                                             *_claimable(worker_id, owner, trusted))
                     .order_by(jobs.c.created_at, jobs.c.id).limit(1))
            if self._pg:
                query = query.with_for_update(skip_locked=True)
            job_id = conn.execute(query).scalar()
            if job_id is None:
                return None
            now = self.clock()
            done = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == JobState.QUEUED.value)
                                .values(state=JobState.RUNNING.value, worker_id=worker_id, claim_key=key,
                                        lease_s=lease_s, lease_expires=now + lease_s, updated_at=now))
            if done.rowcount != 1:  # the lock makes this impossible; never hand one job out twice
                raise R.JobConflict(f"Job {job_id!r} was claimed while being claimed.", param="job_id")
            return _job(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())

    def progress(self, job_id: str, worker_id: str, text: str, tokens: int,
                 token_ids: Sequence[int] | None = None) -> Job:
        """Record the whole stream so far (`text`, `tokens` in all and, when known, their
        `token_ids`; not a delta) and renew the lease. Refused (`JobConflict`) once the job is not
        running on this worker: stop generating."""
        R.check_job_id(job_id)
        R.check_worker_id(worker_id)
        R.check_text(text)
        ids = None if token_ids is None else R.check_token_ids(token_ids, tokens)
        return self._change(job_id, lambda job, now: R.plan_progress(
            job, worker_id, text, tokens, now, job.lease_s or LEASE_S, ids))

    def finish(self, job_id: str, worker_id: str, text: str, tokens: int, token_ids: Sequence[int] | None = None,
               result: dict[str, Any] | None = None) -> Job:
        """The job is done with its whole result (and `result`: finish reason, counts, receipt); the
        caller then settles the hold."""
        R.check_job_id(job_id)
        R.check_worker_id(worker_id)
        R.check_text(text)
        ids = None if token_ids is None else R.check_token_ids(token_ids, tokens)
        done = None if result is None else R.check_result(result)
        return self._change(job_id, lambda job, now: R.plan_finish(job, worker_id, text, tokens, now, ids, done))

    def release(self, job_id: str, worker_id: str, reason: str) -> Job:
        """The worker declined the job: back to the queue, not counted as an attempt."""
        R.check_job_id(job_id)
        R.check_worker_id(worker_id)
        R.check_text(reason, "reason", R.MAX_REASON_CHARS)
        return self._change(job_id, lambda job, now: R.plan_release(job, worker_id, reason, now))

    def fail(self, job_id: str, worker_id: str, reason: str, *, retry: bool = False) -> Job:
        """The worker gives the job up: back to the queue for another worker (`retry`, counts as an
        attempt) or failed for good (the request itself cannot be served)."""
        R.check_job_id(job_id)
        R.check_worker_id(worker_id)
        R.check_text(reason, "reason", R.MAX_REASON_CHARS)
        if type(retry) is not bool:
            raise R.JobInputInvalid(f"retry must be true or false; got {retry!r:.40}", param="retry")
        return self._change(job_id, lambda job, now: R.plan_fail(job, worker_id, reason, retry, now,
                                                                   self.max_attempts))

    def requeue_expired(self, now: float | None = None) -> list[Job]:
        """Move every running job whose lease ran out (its worker stopped) back to the queue, what
        it streamed kept, or fail it after `max_attempts` lost runs. Up to `REQUEUE_BATCH` per call;
        safe from several coordinators at once (each job moves once)."""
        now = self.clock() if now is None else now
        if isinstance(now, bool) or not isinstance(now, int | float):
            raise R.JobInputInvalid(f"now must be a time in seconds; got {now!r:.40}", param="now")
        with self.engine.begin() as conn:
            query = (select(jobs).where(jobs.c.state == JobState.RUNNING.value, jobs.c.lease_expires <= now)
                     .order_by(jobs.c.lease_expires).limit(REQUEUE_BATCH))
            if self._pg:
                query = query.with_for_update(skip_locked=True)
            out = []
            for row in conn.execute(query).all():
                job = _job(row)
                moved = R.plan_requeue(job, now, self.max_attempts, f"worker {job.worker_id} stopped")
                self._write(conn, job, moved)
                out.append(moved)
            return out

    # -- inside a transaction -----------------------------------------------------------------

    def _change(self, job_id: str, plan: Callable[[Job, float], Job]) -> Job:
        """Lock the job's row, plan its change, write it (guarded by the state read)."""
        with self.engine.begin() as conn:
            query = select(jobs).where(jobs.c.id == job_id)
            row = conn.execute(query.with_for_update() if self._pg else query).first()
            job = R.require(None if row is None else _job(row), job_id)
            changed = plan(job, self.clock())
            if changed != job:
                self._write(conn, job, changed)
            return changed

    def _write(self, conn: Connection, old: Job, new: Job) -> None:
        done = conn.execute(update(jobs).where(jobs.c.id == old.id, jobs.c.state == old.state.value,
                                               jobs.c.updated_at == old.updated_at).values(
            state=new.state.value, worker_id=new.worker_id, attempts=new.attempts, text=new.text,
            tokens=new.tokens, error=new.error, lease_expires=new.lease_expires, updated_at=new.updated_at,
            token_ids=_ids_json(new.token_ids), parts=json.dumps([list(p) for p in new.parts]),
            result=None if new.result is None else json.dumps(new.result, sort_keys=True),
            **({} if new.state is JobState.RUNNING else {"claim_key": None})))
        if done.rowcount != 1:  # the row lock makes this impossible; refuse rather than lose a change
            raise R.JobConflict(f"Job {old.id!r} changed while being changed; retry.", param="job_id")


def _job(row: Row[Any]) -> Job:
    return Job(id=row.id, requester=row.requester, digest=row.digest, request=json.loads(row.request),
               max_tokens=row.max_tokens, hold_id=row.hold_id, state=JobState(row.state), worker_id=row.worker_id,
               attempts=row.attempts, text=row.text, tokens=row.tokens, error=row.error, created_at=row.created_at,
               updated_at=row.updated_at, lease_expires=row.lease_expires, lease_s=row.lease_s,
               token_ids=tuple(json.loads(row.token_ids or "[]")),
               parts=tuple((str(w), int(n)) for w, n in json.loads(row.parts or "[]")),
               result=None if row.result is None else json.loads(row.result), purpose=row.purpose,
               target=row.target, avoid=tuple(json.loads(row.avoid or "[]")), avoid_owner=row.avoid_owner,
               parent=row.parent, verified_only=bool(row.verified_only))


def _claimable(worker_id: str, owner: str | None, trusted: bool) -> list[ColumnElement[bool]]:
    """`claim_rules.may_claim` as SQL conditions (worker ids are a-z2-7: nothing to escape in LIKE)."""
    out = [or_(jobs.c.target.is_(None), jobs.c.target == worker_id),
           ~jobs.c.avoid.contains(f'"{worker_id}"'),
           jobs.c.avoid_owner.is_(None) if owner is None
           else or_(jobs.c.avoid_owner.is_(None), jobs.c.avoid_owner != owner)]
    if not trusted:
        out.append(jobs.c.verified_only == false())
    return out


def _ids_json(ids: tuple[int, ...]) -> str:
    return json.dumps(list(ids), separators=(",", ":"))
