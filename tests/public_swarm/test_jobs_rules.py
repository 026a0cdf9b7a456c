"""The job queue's pure rules (no database): hypothesis drives random sequences of operations
through `job_rules.plan_*` and checks the invariants the queue relies on after every step."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.errors import HearthError
from hearth.public_swarm.coordinator import job_rules as R
from hearth.public_swarm.coordinator.job_rules import FINAL, Job, JobConflict, JobNotFound, JobState
from tests.public_swarm.jobs_kit import digest, node

WORKERS = [node(1), node(2), node(3)]
MAX_TOKENS = 20
MAX_ATTEMPTS = 3


def fresh() -> Job:
    return Job(id="0123456789abcdef", requester="alice", digest=digest("a"), request={}, max_tokens=MAX_TOKENS,
               hold_id=None, state=JobState.QUEUED, worker_id=None, attempts=0, text="", tokens=0, error=None,
               created_at=0.0, updated_at=0.0, lease_expires=None)


def claim(job: Job, worker: str, now: float) -> Job:
    """What `JobQueue.claim` writes (it lives in SQL there: the lock is the point)."""
    if job.state is not JobState.QUEUED:
        raise JobConflict("not queued")
    return replace(job, state=JobState.RUNNING, worker_id=worker, lease_expires=now + 10, lease_s=10.0)


ops = st.lists(st.tuples(
    st.sampled_from(["claim", "progress", "finish", "fail", "retry", "expire", "cancel"]),
    st.sampled_from(WORKERS), st.text("ab", max_size=3), st.integers(-2, MAX_TOKENS + 2)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_random_operations_keep_the_invariants(steps: list[tuple[str, str, str, int]]) -> None:
    job, now = fresh(), 0.0
    for op, worker, more, tokens in steps:
        now += 1
        before = job
        try:
            if op == "claim":
                job = claim(job, worker, now)
            elif op == "progress":
                job = R.plan_progress(job, worker, job.text + more, tokens, now, 10)
            elif op == "finish":
                job = R.plan_finish(job, worker, job.text + more, tokens, now)
            elif op in ("fail", "retry"):
                job = R.plan_fail(job, worker, "boom", op == "retry", now, MAX_ATTEMPTS)
            elif op == "expire" and job.state is JobState.RUNNING:
                job = R.plan_requeue(job, now, MAX_ATTEMPTS, "stopped")
            elif op == "cancel":
                job = R.plan_cancel(job, "alice", now)
        except (JobConflict, JobNotFound, R.JobInputInvalid):
            assert job == before
            continue
        assert 0 <= job.tokens <= job.max_tokens
        assert job.text.startswith(before.text)  # the stream only grows, whoever runs it
        assert job.tokens >= before.tokens
        assert job.attempts >= before.attempts and job.attempts <= MAX_ATTEMPTS
        assert (job.state is JobState.RUNNING) == (job.worker_id is not None and job.lease_expires is not None) \
            or job.state is JobState.DONE
        if before.state in FINAL:
            assert job == before  # nothing leaves a final state
        if job.attempts == MAX_ATTEMPTS:
            assert job.state is JobState.FAILED


def test_the_last_lost_run_fails_the_job() -> None:
    job = replace(fresh(), state=JobState.RUNNING, worker_id=WORKERS[0], lease_expires=5.0, text="so far", tokens=2)
    again = R.plan_requeue(job, 6.0, 2, "stopped")
    assert (again.state, again.attempts, again.text, again.worker_id) == (JobState.QUEUED, 1, "so far", None)
    running = replace(again, state=JobState.RUNNING, worker_id=WORKERS[1], lease_expires=20.0)
    dead = R.plan_requeue(running, 21.0, 2, "stopped")
    assert (dead.state, dead.attempts, dead.text) == (JobState.FAILED, 2, "so far")


def test_cancel_by_another_requester_is_not_found() -> None:
    with pytest.raises(JobNotFound):
        R.plan_cancel(fresh(), "mallory", 1.0)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=20)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_a_request_round_trips_through_its_canonical_json(request: dict[str, Any]) -> None:
    assert json.loads(R.encode_request(request)) == request


@given(st.one_of(st.text(max_size=80), st.integers(), st.none(), st.binary(max_size=20), st.lists(st.text())))
def test_id_checks_accept_exactly_their_shape(value: object) -> None:
    for check, pattern in ((R.check_job_id, R.JOB_ID), (R.check_worker_id, R.WORKER_ID), (R.check_digest, R.DIGEST)):
        ok = isinstance(value, str) and pattern.fullmatch(value) is not None
        try:
            assert check(value) == value and ok
        except R.JobInputInvalid as exc:
            assert not ok and isinstance(exc, HearthError) and exc.http_status == 400 and exc.param


@given(st.one_of(st.text(max_size=12), st.integers(), st.none()))
def test_check_state(value: object) -> None:
    if value in {s.value for s in JobState}:
        assert R.check_state(value).value == value
    else:
        with pytest.raises(R.JobInputInvalid):
            R.check_state(value)
