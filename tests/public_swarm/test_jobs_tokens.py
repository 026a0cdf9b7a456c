"""The queue's additions for the dispatcher (migration c0003), on SQLite and PostgreSQL: a job keeps
its streamed token ids and who streamed what across a lost run, a decline gives the job back without
counting an attempt, and the ids must continue what was streamed."""

from __future__ import annotations

import pytest

from hearth.public_swarm.coordinator.job_rules import JobConflict, JobInputInvalid, JobState
from hearth.public_swarm.coordinator.jobs import JobQueue
from tests.public_swarm.jobs_kit import digest, node, snapshot

D = digest("m")


def test_tokens_parts_release_and_resume(ledger_url: str) -> None:
    with JobQueue.open(ledger_url) as q:
        job = q.submit("asker", "key-0001", D, {"x": 1}, 10)
        q.claim(node(1), [D])
        released = q.release(job.id, node(1), "busy")
        assert released.state is JobState.QUEUED and released.attempts == 0 and released.worker_id is None
        assert q.release(job.id, node(1), "busy") == released  # a repeat is a no-op
        q.claim(node(1), [D])
        q.progress(job.id, node(1), "ab", 2, [5, 6])
        before = snapshot(q)
        for ids, tokens, error in (([7, 6, 1], 3, JobConflict), ([5], 2, JobInputInvalid),
                                   ("no", 2, JobInputInvalid), ([5, -1], 2, JobInputInvalid)):
            with pytest.raises(error):
                q.progress(job.id, node(1), "abc", tokens, ids)  # type: ignore[arg-type]
        assert snapshot(q) == before
        lost = q.fail(job.id, node(1), "lost", retry=True)
        assert (lost.state, lost.attempts, lost.token_ids, lost.text) == (JobState.QUEUED, 1, (5, 6), "ab")
        again = q.claim(node(2), [D])
        assert again is not None and again.token_ids == (5, 6)
        done = q.finish(job.id, node(2), "abcd", 4, [5, 6, 7, 8], {"finish_reason": "stop"})
        assert done.parts == ((node(1), 2), (node(2), 2)) and done.result == {"finish_reason": "stop"}
        assert q.get(job.id) == done
