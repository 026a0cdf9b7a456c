"""The coordinator's events as formatted, without sockets: short worker ids, reason codes that can
hold no free text, a final job mapped to `job_done` (cost as its books settle it) or `job_failed`,
checks and canaries left to `check_done`, and what `SwarmEvents` puts on a feed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.node_api.feed import Feed
from hearth.node_api.status import DashEvent
from hearth.public_swarm.coordinator import books_rules as B
from hearth.public_swarm.coordinator import events as E
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import Job, JobState
from tests.public_swarm.dispatch_kit import MODEL, PRICE, chat

WORKER = "w" * 52
ASKER = "a" * 52


def job(state: JobState, *, hold: str | None = "h" * 24, purpose: str = "user", tokens: int = 8) -> Job:
    spec = JobSpec(chat(max_tokens=16), "chat", MODEL.name, PRICE, 40)
    return Job(id="j" * 24, requester=ASKER, digest=MODEL.digest, request=spec.to_json(), max_tokens=16,
               hold_id=hold, state=state, worker_id=WORKER, attempts=1, text="Hello", tokens=tokens, error=None,
               created_at=1000.0, updated_at=1000.84, lease_expires=None, token_ids=tuple(range(tokens)),
               parts=((WORKER, tokens),), result={"prompt_tokens": 7, "finisher": WORKER} if state is JobState.DONE
               else None, purpose=purpose)


def test_a_done_job_is_job_done_with_its_settled_cost() -> None:
    done = job(JobState.DONE)
    kind, message, data = E.job_ended(done) or ("", "", {})
    assert kind == "job_done" and data == {"model": MODEL.name, "tokens": 8, "cost": 15 * PRICE, "ms": 840}
    assert data["cost"] == sum(B.closing(done).paid.values())
    assert message == f"job done: {MODEL.name}, 8 tokens, 0.008985 credits, 840 ms"
    assert E.job_ended(job(JobState.DONE, hold=None))[2]["cost"] == 0  # type: ignore[index]  # free tier


def test_failed_and_cancelled_jobs_are_job_failed_and_checks_are_left_out() -> None:
    assert E.job_ended(job(JobState.FAILED), "worker_lost") == (
        "job_failed", f"job failed: {MODEL.name} (worker_lost)", {"model": MODEL.name, "reason": "worker_lost"})
    assert E.job_ended(job(JobState.FAILED))[2]["reason"] == "failed"  # type: ignore[index]
    assert E.job_ended(job(JobState.CANCELLED))[2]["reason"] == "cancelled"  # type: ignore[index]
    assert E.job_ended(job(JobState.RUNNING)) is None
    assert E.job_ended(job(JobState.DONE, purpose="check")) is None
    assert E.job_ended(job(JobState.DONE, purpose="canary")) is None
    unreadable = dataclasses.replace(job(JobState.FAILED), request={"v": 99})
    assert E.job_ended(unreadable)[2]["model"] == "?"  # type: ignore[index]
    unreadable_done = dataclasses.replace(job(JobState.DONE), request={"v": 99})
    assert E.job_ended(unreadable_done)[2] == {"model": "?", "tokens": 8, "cost": 0, "ms": 840}  # type: ignore[index]


def test_workers_and_checks_name_a_worker_by_twelve_characters() -> None:
    assert E.worker_joined(WORKER, ["b", "a", "a"]) == (
        "worker_joined", f"worker joined: {'w' * 12}… with a, b", {"worker": "w" * 12, "models": "a, b", "n_models": 2})
    assert E.worker_left(WORKER, "peer_dead")[2] == {"worker": "w" * 12, "reason": "peer_dead"}
    assert E.job_dispatched(MODEL.name, WORKER)[2] == {"model": MODEL.name, "worker": "w" * 12}
    assert E.check_done("failed", WORKER) == ("check_done", f"check failed of {'w' * 12}…",
                                              {"verdict": "failed", "worker": "w" * 12})
    assert E.check_done("inconclusive", None)[1] == "check inconclusive"
    with pytest.raises(ValueError):
        E.check_done("maybe", WORKER)
    many = E.worker_joined(WORKER, [f"model-{i:03d}-" + "x" * 60 for i in range(64)])
    assert len(str(many[2]["models"])) <= E.MAX_MODELS_TEXT and many[2]["n_models"] == 64


@given(st.text(max_size=300) | st.none())
def test_a_reason_code_is_a_short_snake_case_word(reason: str | None) -> None:
    got = E.code(reason)
    assert 1 <= len(got) <= 32 and all(c.islower() or c.isdigit() or c == "_" for c in got) and got.isascii()
    assert not got.startswith("_") and not got.endswith("_")


def test_swarm_events_publish_to_their_feed_only() -> None:
    a, b = E.SwarmEvents(Feed()), E.SwarmEvents(Feed())  # two coordinators: each its own stream
    a.emit(E.job_queued(MODEL.name))
    a.emit(None)
    a.emit(E.job_ended(job(JobState.DONE)))
    got = a.feed.since(0)
    assert [e.kind for e in got] == ["job_queued", "job_done"] and b.feed.since(0) == []
    assert all(DashEvent.model_validate(e.model_dump()) == e for e in got)
