"""The job queue on a real database, on SQLite and on PostgreSQL 15: the life of a job, retries,
lease expiry with the streamed part kept, a restart that loses nothing, and refusals that change
nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.errors import HearthError
from hearth.public_swarm.coordinator.job_rules import (
    MAX_REQUEST_BYTES,
    MAX_TEXT_CHARS,
    JobConflict,
    JobInputInvalid,
    JobNotFound,
    JobState,
)
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.ledger.errors import KeyReused
from tests.public_swarm.jobs_kit import Clock, digest, node, snapshot

A, B = digest("model-a"), digest("model-b")
W1, W2 = node(1), node(2)
REQ = {"messages": [{"role": "user", "content": "hello"}], "temperature": 0}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def q(ledger_url: str, clock: Clock) -> Iterator[JobQueue]:
    with JobQueue.open(ledger_url, clock=clock, max_attempts=3) as queue:
        yield queue


def test_submit_claim_progress_finish(q: JobQueue, clock: Clock) -> None:
    job = q.submit("alice", "key-00001", A, REQ, 64, hold_id="abcdef0123456789")
    assert (job.state, job.attempts, job.text, job.tokens, job.worker_id) == (JobState.QUEUED, 0, "", 0, None)
    assert job.request == REQ and job.hold_id == "abcdef0123456789"
    assert q.position(job.id) == 0
    clock.now += 1
    running = q.claim(W1, [A], lease_s=10)
    assert running is not None and running.id == job.id
    assert (running.state, running.worker_id, running.lease_expires) == (JobState.RUNNING, W1, clock.now + 10)
    assert q.position(job.id) is None
    clock.now += 5
    p = q.progress(job.id, W1, "Hel", 2)
    assert (p.text, p.tokens, p.lease_expires) == ("Hel", 2, clock.now + 10)
    assert q.progress(job.id, W1, "Hel", 2).text == "Hel"  # a retry
    assert q.progress(job.id, W1, "H", 1).tokens == 2  # a stale report only renews the lease
    done = q.finish(job.id, W1, "Hello!", 4)
    assert (done.state, done.text, done.tokens, done.lease_expires) == (JobState.DONE, "Hello!", 4, None)
    assert q.finish(job.id, W1, "Hello!", 4) == done  # a retry
    with pytest.raises(JobConflict):
        q.progress(job.id, W1, "Hello!!", 5)
    assert q.get(job.id) == done
    assert q.claim(W1, [A]) is None


def test_submit_is_idempotent_by_requester_and_key(q: JobQueue) -> None:
    first = q.submit("alice", "key-00001", A, REQ, 64)
    assert q.submit("alice", "key-00001", A, dict(REQ), 64) == first
    other = q.submit("bob01", "key-00001", A, REQ, 64)  # keys are per requester
    assert other.id != first.id
    before = snapshot(q)
    for args in [(A, {**REQ, "temperature": 1}, 64), (A, REQ, 65), (B, REQ, 64)]:
        with pytest.raises(KeyReused):
            q.submit("alice", "key-00001", *args)
    assert snapshot(q) == before
    assert [j.id for j in q.list_for("alice")] == [first.id]


def test_claim_only_matches_models_the_worker_holds(q: JobQueue, clock: Clock) -> None:
    ja = q.submit("alice", "key-a0001", A, REQ, 8)
    clock.now += 1
    jb = q.submit("alice", "key-b0001", B, REQ, 8)
    assert q.claim(W1, [digest("model-c")]) is None
    got = q.claim(W1, [B, digest("model-c")])
    assert got is not None and got.id == jb.id
    assert q.claim(W2, [B]) is None
    got = q.claim(W2, [A, B])
    assert got is not None and got.id == ja.id


def test_claims_go_oldest_first_and_position_counts_the_same_model(q: JobQueue, clock: Clock) -> None:
    ids = []
    for i in range(4):
        clock.now += 1
        ids.append(q.submit("alice", f"key-{i:05d}", A if i != 2 else B, REQ, 8).id)
    assert [q.position(i) for i in ids] == [0, 1, 0, 2]
    got = q.claim(W1, [A, B])
    assert got is not None and got.id == ids[0]
    assert [q.position(i) for i in ids[1:]] == [0, 0, 1]


def test_claim_key_makes_a_retried_claim_return_the_same_job(q: JobQueue) -> None:
    q.submit("alice", "key-00001", A, REQ, 8)
    q.submit("alice", "key-00002", A, REQ, 8)
    first = q.claim(W1, [A], key="claim-w1-0001")
    again = q.claim(W1, [A], key="claim-w1-0001")
    assert first is not None and again == first
    assert q.counts()[JobState.QUEUED] == 1


def test_expired_lease_requeues_with_the_stream_kept_then_gives_up(q: JobQueue, clock: Clock) -> None:
    job = q.submit("alice", "key-00001", A, REQ, 50)
    assert q.claim(W1, [A], lease_s=10) is not None
    q.progress(job.id, W1, "Once upon", 3)
    clock.now += 9
    assert q.requeue_expired() == []  # the lease runs until progress + 10
    clock.now += 2
    [moved] = q.requeue_expired()
    assert (moved.state, moved.attempts, moved.text, moved.tokens, moved.worker_id) == (
        JobState.QUEUED, 1, "Once upon", 3, None)
    assert q.get(job.id) == moved and q.position(job.id) == 0
    with pytest.raises(JobConflict):  # the old worker's late report is refused: it must stop
        q.progress(job.id, W1, "Once upon a", 4)
    resumed = q.claim(W2, [A], lease_s=10)
    assert resumed is not None and resumed.text == "Once upon" and resumed.worker_id == W2
    with pytest.raises(JobConflict):  # a new worker must continue the stream, not restart it
        q.progress(job.id, W2, "Twice", 5)
    q.progress(job.id, W2, "Once upon a time", 5)
    clock.now += 11
    assert q.requeue_expired()[0].attempts == 2
    assert q.claim(W1, [A], lease_s=10) is not None
    clock.now += 11
    [failed] = q.requeue_expired()
    assert (failed.state, failed.attempts, failed.text) == (JobState.FAILED, 3, "Once upon a time")
    assert failed.error is not None and "3 attempts" in failed.error
    assert q.claim(W2, [A]) is None


def test_fail_requeues_or_ends_the_job(q: JobQueue) -> None:
    q.submit("alice", "key-00001", A, REQ, 8)
    q.submit("alice", "key-00002", A, REQ, 8)
    j1, j2 = q.claim(W1, [A]), q.claim(W2, [A])
    assert j1 is not None and j2 is not None
    back = q.fail(j1.id, W1, "out of memory", retry=True)
    assert (back.state, back.attempts) == (JobState.QUEUED, 1)
    assert q.fail(j1.id, W1, "out of memory", retry=True) == back  # a retry
    with pytest.raises(JobConflict):
        q.fail(j2.id, W1, "not mine")
    gone = q.fail(j2.id, W2, "prompt too long for n_ctx")
    assert (gone.state, gone.error) == (JobState.FAILED, "prompt too long for n_ctx")
    assert q.fail(j2.id, W2, "prompt too long for n_ctx") == gone


def test_cancel(q: JobQueue) -> None:
    ids = {q.submit("alice", f"key-0000{i}", A, REQ, 8).id for i in (1, 2)}
    q.submit("alice", "key-00003", B, REQ, 8)
    running = q.claim(W1, [A])
    assert running is not None
    [queued] = ids - {running.id}
    with pytest.raises(JobNotFound):  # someone else's job is not found, not refused
        q.cancel(running.id, "mallory")
    assert q.cancel(running.id, "alice").state is JobState.CANCELLED
    assert q.cancel(running.id, "alice").state is JobState.CANCELLED
    with pytest.raises(JobConflict):  # the worker's next report tells it to stop
        q.progress(running.id, W1, "x", 1)
    assert q.cancel(queued, "alice").state is JobState.CANCELLED
    assert q.claim(W1, [A]) is None
    assert [j.state for j in q.list_for("alice", state="cancelled")] == [JobState.CANCELLED] * 2
    done = q.claim(W1, [B])
    assert done is not None
    q.finish(done.id, W1, "ok", 1)
    with pytest.raises(JobConflict):
        q.cancel(done.id, "alice")


def test_restart_loses_nothing(ledger_url: str, clock: Clock) -> None:
    with JobQueue.open(ledger_url, clock=clock) as q:
        ids = [q.submit("alice", f"key-{i:05d}", A, {**REQ, "n": i}, 16).id for i in range(5)]
        first = q.claim(W1, [A], lease_s=20)
        assert first is not None
        q.progress(first.id, W1, "half", 2)
        before = [q.get(i) for i in ids]
    with JobQueue.open(ledger_url, clock=clock) as q:  # a new process: a new engine, migrations again
        assert [q.get(i) for i in ids] == before
        assert q.submit("alice", "key-00003", A, {**REQ, "n": 3}, 16).id == ids[3]
        clock.now += 21
        [moved] = q.requeue_expired()
        assert moved.id == first.id and moved.text == "half"
        resumed = q.claim(W2, [A])  # the oldest queued job again (ties broken by id)
        assert resumed is not None and resumed.state is JobState.RUNNING


BAD: list[tuple[str, dict[str, Any]]] = [
    ("requester", {"requester": "A"}),
    ("requester", {"requester": "operator"}),
    ("key", {"key": "short"}),
    ("key", {"key": "has space 123"}),
    ("digest", {"digest": "ABC"}),
    ("digest", {"digest": A.upper()}),
    ("request", {"request": ["not", "an", "object"]}),
    ("request", {"request": {"x": float("nan")}}),
    ("request", {"request": {"x": object()}}),
    ("request", {"request": {"p": "x" * MAX_REQUEST_BYTES}}),
    ("max_tokens", {"max_tokens": 0}),
    ("max_tokens", {"max_tokens": True}),
    ("max_tokens", {"max_tokens": 2**21}),
    ("max_tokens", {"max_tokens": 1.0}),
    ("hold_id", {"hold_id": "HOLD!"}),
]


@pytest.mark.parametrize(("param", "change"), BAD)
def test_a_malformed_submit_is_refused_and_writes_nothing(q: JobQueue, param: str, change: dict[str, Any]) -> None:
    q.submit("alice", "key-00001", A, REQ, 8)
    before = snapshot(q)
    args: dict[str, Any] = {"requester": "alice", "key": "key-00002", "digest": A, "request": REQ,
                            "max_tokens": 8, "hold_id": None, **change}
    with pytest.raises(JobInputInvalid) as exc:
        q.submit(**args)
    assert exc.value.param == param and exc.value.http_status == 400
    assert snapshot(q) == before


def test_malformed_worker_calls_are_refused_and_write_nothing(q: JobQueue) -> None:
    job = q.submit("alice", "key-00001", A, REQ, 8)
    assert q.claim(W1, [A]) is not None
    q.submit("alice", "key-00002", A, REQ, 8)
    before = snapshot(q)
    bad: list[tuple[str, Any]] = [
        ("worker_id", lambda: q.claim("UPPER", [A])),
        ("worker_id", lambda: q.claim(W1 + "a", [A])),
        ("digests", lambda: q.claim(W2, [])),
        ("digests", lambda: q.claim(W2, A)),
        ("digests", lambda: q.claim(W2, [digest(str(i)) for i in range(65)])),
        ("digest", lambda: q.claim(W2, ["nothex"])),
        ("lease_s", lambda: q.claim(W2, [A], lease_s=0)),
        ("lease_s", lambda: q.claim(W2, [A], lease_s=10**6)),
        ("key", lambda: q.claim(W2, [A], key="x")),
        ("job_id", lambda: q.progress("../etc", W1, "x", 1)),
        ("job_id", lambda: q.get("x" * 65)),
        ("job_id", lambda: q.position(None)),  # type: ignore[arg-type]
        ("text", lambda: q.progress(job.id, W1, "x" * (MAX_TEXT_CHARS + 1), 1)),
        ("text", lambda: q.finish(job.id, W1, b"bytes", 1)),  # type: ignore[arg-type]
        ("tokens", lambda: q.progress(job.id, W1, "x", 9)),
        ("tokens", lambda: q.progress(job.id, W1, "x", -1)),
        ("tokens", lambda: q.finish(job.id, W1, "x", "3")),  # type: ignore[arg-type]
        ("reason", lambda: q.fail(job.id, W1, "x" * 501)),
        ("retry", lambda: q.fail(job.id, W1, "x", retry=1)),  # type: ignore[arg-type]
        ("state", lambda: q.list_for("alice", state="paused")),
        ("state", lambda: q.list_for("alice", state=3)),  # type: ignore[arg-type]
        ("limit", lambda: q.list_for("alice", limit=0)),
        ("requester", lambda: q.cancel(job.id, "")),
        ("now", lambda: q.requeue_expired("soon")),  # type: ignore[arg-type]
    ]
    for param, call in bad:
        with pytest.raises(JobInputInvalid) as exc:
            call()
        assert exc.value.param == param, (param, exc.value.message)
        assert isinstance(exc.value, HearthError) and exc.value.message
    with pytest.raises(JobNotFound):
        q.progress("0123456789abcdef", W1, "x", 1)
    with pytest.raises(JobNotFound):
        q.position("0123456789abcdef")
    assert q.get("0123456789abcdef") is None
    assert snapshot(q) == before


def test_the_migration_builds_the_table_the_code_uses(q: JobQueue) -> None:
    """Alembic's comparison of migration c0002's result with `job_tables.jobs` finds nothing."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hearth.public_swarm.coordinator.tables import metadata

    with q.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    ours = [d for d in diff if any(t in repr(d) for t in ("coordinator_jobs", "coordinator_trust",
                                                           "coordinator_checks"))]
    assert ours == []


junk = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=70),
                 st.binary(max_size=10), st.lists(st.text(max_size=64), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
                 st.sampled_from([A, W1, "0123456789abcdef", "alice", "key-00009", "queued", 5, 1.5]))
CALLS = ["submit", "claim", "progress", "finish", "fail", "cancel", "get", "position", "list_for", "requeue_expired"]


def test_garbage_from_the_network_is_refused_clearly_and_writes_nothing(tmp_path: Any) -> None:
    """Hypothesis feeds every operation arbitrary values (the later HTTP and worker endpoints pass
    them through): each call either succeeds or raises a HearthError with a 4xx status, and a
    refused call leaves the table as it was. SQLite only: the checks run before any SQL."""
    with JobQueue.open(f"sqlite:///{tmp_path / 'fuzz.db'}", clock=Clock()) as q:
        q.submit("alice", "key-00001", A, REQ, 8)
        assert q.claim(W1, [A]) is not None

        @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.sampled_from(CALLS), st.lists(junk, min_size=6, max_size=6))
        def run(call: str, a: list[Any]) -> None:
            before = snapshot(q)
            fn = getattr(q, call)
            args = {"submit": (a[0], a[1], a[2], a[3], a[4], a[5]), "claim": (a[0], a[1], a[2], a[3]),
                    "progress": (a[0], a[1], a[2], a[3]), "finish": (a[0], a[1], a[2], a[3]),
                    "fail": (a[0], a[1], a[2]), "cancel": (a[0], a[1]), "get": (a[0],), "position": (a[0],),
                    "list_for": (a[0],), "requeue_expired": (a[0] if isinstance(a[0], str | bytes) else 0.0,)}[call]
            try:
                fn(*args)
            except HearthError as exc:
                assert 400 <= exc.http_status < 500 and exc.message
                assert snapshot(q) == before

        run()
