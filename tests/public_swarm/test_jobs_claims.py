"""Who may claim a job (issue 11, `claim_rules`): a claim never hands a job to a worker it excludes
(target, avoid, avoid_owner, verified_only), on SQLite and on a real PostgreSQL, also when many
workers claim at once; the SQL and `claim_rules.may_claim` agree on every job."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from hearth.public_swarm.coordinator.claim_rules import check_routing, may_claim
from hearth.public_swarm.coordinator.job_rules import JobInputInvalid, JobState
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.coordinator.jobs import JobQueue
from tests.public_swarm.jobs_kit import digest, node, snapshot

D = digest("a")
WORKERS = [node(i) for i in range(1, 5)]
OWNERS = ["192.0.2.0/24", "198.51.100.0/24"]
Worker = tuple[str, str, bool]
"""(node id, owner, trusted)"""


@pytest.fixture
def q(ledger_url: str) -> Iterator[JobQueue]:
    with JobQueue.open(ledger_url) as queue:
        yield queue


def test_each_rule_keeps_a_job_from_the_workers_it_excludes(q: JobQueue) -> None:
    a, b, c = WORKERS[:3]
    q.submit("alice", "key-target", D, {"p": 1}, 8, purpose="canary", target=b)
    q.submit("alice", "key-avoid", D, {"p": 2}, 8, purpose="check", avoid=[a], parent="parentjob1")
    q.submit("alice", "key-owner", D, {"p": 3}, 8, purpose="check", avoid_owner=OWNERS[0])
    q.submit("alice", "key-verified", D, {"p": 4}, 8, verified_only=True)
    # a (owner 0, not trusted) may take none of them
    assert q.claim(a, [D], owner=OWNERS[0]) is None
    got = q.claim(c, [D])
    assert got is not None and got.avoid == (a,) and got.parent == "parentjob1" and got.purpose == "check"
    # without saying its owner, c may not take the job that avoids an owner
    assert q.claim(c, [D]) is None
    got = q.claim(c, [D], owner=OWNERS[1])
    assert got is not None and got.avoid_owner == OWNERS[0]
    assert q.claim(c, [D], owner=OWNERS[1]) is None  # the canary is b's; the last wants a trusted one
    got = q.claim(c, [D], owner=OWNERS[1], trusted=True)
    assert got is not None and got.verified_only
    got = q.claim(b, [D], owner=OWNERS[1])
    assert got is not None and got.target == b and got.purpose == "canary"


def test_checks_and_canaries_are_not_requesters_jobs_on_the_health_page(q: JobQueue) -> None:
    q.submit("alice", "key-user", D, {"p": 1}, 8)
    q.submit("operator.checks", "key-check", D, {"p": 1}, 8, purpose="check", avoid_owner=OWNERS[0])
    assert q.counts()[JobState.QUEUED] == 1
    assert [j.purpose for j in q.list_for("alice")] == ["user"]


@pytest.mark.parametrize("change", [
    {"purpose": "sneaky"}, {"target": "NOT-A-NODE"}, {"avoid": ["x"]}, {"avoid": [node(i) for i in range(20)]},
    {"avoid_owner": "bad owner!"}, {"parent": "../x"}, {"verified_only": "yes"},
])
def test_malformed_routing_is_refused_and_writes_nothing(tmp_path: Path, change: dict[str, object]) -> None:
    q = JobQueue.open(f"sqlite:///{tmp_path / 'bad.db'}")
    before = snapshot(q)
    with pytest.raises(JobInputInvalid):
        q.submit("alice", "key-bad", D, {"p": 1}, 8, **change)  # type: ignore[arg-type]
    assert snapshot(q) == before
    with pytest.raises(JobInputInvalid):
        q.claim(WORKERS[0], [D], owner="bad owner!")
    q.close()


def test_the_same_key_with_other_routing_is_refused(q: JobQueue) -> None:
    first = q.submit("alice", "key-same", D, {"p": 1}, 8)
    assert q.submit("alice", "key-same", D, {"p": 1}, 8).id == first.id
    with pytest.raises(Exception, match="another job"):
        q.submit("alice", "key-same", D, {"p": 1}, 8, verified_only=True)


routing = st.fixed_dictionaries({
    "purpose": st.sampled_from(["user", "check", "canary"]),
    "target": st.none() | st.sampled_from(WORKERS),
    "avoid": st.lists(st.sampled_from(WORKERS), max_size=3),
    "avoid_owner": st.none() | st.sampled_from(OWNERS),
    "verified_only": st.booleans(),
})
worker = st.tuples(st.sampled_from(WORKERS), st.none() | st.sampled_from(OWNERS), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(routes=st.lists(routing, min_size=1, max_size=6), who=worker)
def test_sql_and_may_claim_agree(tmp_path: Path, routes: list[dict[str, object]],
                                 who: tuple[str, str | None, bool]) -> None:
    """Claiming until None takes exactly the jobs `may_claim` allows this worker, oldest first."""
    with JobQueue.open(f"sqlite:///{tmp_path / 'claims.db'}") as queue:
        with queue.engine.begin() as conn:
            conn.execute(delete(jobs))
        made = [queue.submit("alice", f"key-{i:04d}", D, {"i": i}, 8, **r) for i, r in enumerate(routes)]  # type: ignore[arg-type]
        node_id, owner, trusted = who
        taken = []
        while (job := queue.claim(node_id, [D], owner=owner, trusted=trusted)) is not None:
            taken.append(job.id)
        assert taken == [j.id for j in made if may_claim(j, node_id, owner, trusted)]
        assert all(check_routing(**r) for r in routes)  # type: ignore[arg-type]


def test_concurrent_claims_never_give_a_job_to_a_worker_it_excludes(ledger_url: str) -> None:
    """8 workers (2 owners, some trusted) claim at once from 8 threads over 120 jobs with every kind
    of exclusion: each job is claimed at most once, only by a worker it allows, and every job some
    worker may take is taken."""
    pool = [(node(10 + i), OWNERS[i % 2], i % 3 == 0) for i in range(8)]
    with JobQueue.open(ledger_url, pool_size=8) as queue:
        made = []
        for i in range(120):
            w = pool[i % len(pool)][0]
            r = [{}, {"purpose": "canary", "target": w}, {"purpose": "check", "avoid": [w], "avoid_owner": OWNERS[i % 2]},
                 {"verified_only": True}][i % 4]
            made.append(queue.submit("alice", f"key-{i:04d}", D, {"i": i}, 8, **r))  # type: ignore[arg-type]
        claims: list[tuple[str, Worker]] = []
        lock, barrier, errors = threading.Lock(), threading.Barrier(len(pool)), []

        def run(me: Worker) -> None:
            try:
                barrier.wait()
                while (job := queue.claim(me[0], [D], lease_s=600, owner=me[1], trusted=me[2])) is not None:
                    with lock:
                        claims.append((job.id, me))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(me,)) for me in pool]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[0]
        by_id = {j.id: j for j in made}
        assert max(Counter(job_id for job_id, _ in claims).values()) == 1
        assert all(may_claim(by_id[job_id], *me) for job_id, me in claims)
        claimable = {j.id for j in made if any(may_claim(j, *me) for me in pool)}
        assert {job_id for job_id, _ in claims} == claimable
        print(f"{len(claims)} of {len(made)} jobs claimed by {len(pool)} workers at once")
