"""The books sweep's planning (coordinator.books_rules), without I/O: which jobs it settles, which it
drops, and that closing a job pays exactly what the dispatcher pays."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from hearth.public_swarm.coordinator import books_rules as B
from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import FINAL, Job, JobState
from hearth.public_swarm.ledger.rules import Hold, HoldState
from tests.public_swarm.dispatch_kit import chat
from tests.public_swarm.jobs_kit import node

NOW = 1_000_000.0
SPEC = JobSpec(chat(max_tokens=8), "chat", "m", 599, 40)


def job(state: JobState, hold_id: str | None = "h" * 24, parts: tuple[tuple[str, int], ...] = (),
        result: dict[str, object] | None = None, jid: str = "j" * 24) -> Job:
    return Job(id=jid, requester=node(1), digest="ab" * 32, request=SPEC.to_json(), max_tokens=8, hold_id=hold_id,
               state=state, worker_id=None, attempts=0, text="", tokens=sum(n for _, n in parts), error=None,
               created_at=NOW, updated_at=NOW, lease_expires=None, parts=parts, result=result)


def hold(state: HoldState = HoldState.OPEN, expires_at: float = NOW + 100, hid: str = "h" * 24) -> Hold:
    return Hold(hid, node(1), 10**6, expires_at, state)


def test_a_done_job_is_closed_as_the_dispatcher_pays_it() -> None:
    done = job(JobState.DONE, parts=((node(2), 3), (node(3), 5)), result={"prompt_tokens": 7, "finisher": node(3)})
    plan = B.closing(done)
    assert plan.key == D.settle_key(done.id) and plan.hold_id == done.hold_id
    assert plan.paid == {node(2): 3 * 599, node(3): (5 + 7) * 599}


def test_a_failed_or_cancelled_job_pays_the_tokens_streamed_but_not_the_prompt() -> None:
    for state in (JobState.FAILED, JobState.CANCELLED):
        plan = B.closing(job(state, parts=((node(2), 2),), result={"prompt_tokens": 7, "finisher": node(2)}))
        assert plan.paid == {node(2): 2 * 599}


def test_final_jobs_with_open_holds_are_settled_even_past_expiry() -> None:
    pending = [(job(s, jid=f"{s.value:x<24}"), hold(expires_at=NOW - 1)) for s in FINAL]
    plan = B.plan_sweep(pending, NOW)
    assert {j.state for j in plan.settle} == set(FINAL) and plan.drop == ()


def test_unfinished_jobs_whose_hold_is_gone_are_dropped_and_live_ones_kept() -> None:
    queued, running = job(JobState.QUEUED), job(JobState.RUNNING, jid="r" * 24)
    assert B.plan_sweep([(queued, hold(HoldState.EXPIRED)), (running, hold(expires_at=NOW))], NOW).drop == (
        queued, running)
    assert B.plan_sweep([(queued, hold()), (running, hold())], NOW) == B.SweepPlan((), ())


def test_a_closed_hold_of_a_final_job_and_a_free_job_need_nothing() -> None:
    closed = [(job(JobState.DONE), hold(s)) for s in (HoldState.SETTLED, HoldState.RELEASED, HoldState.EXPIRED)]
    free = [(job(JobState.DONE, hold_id=None), None), (job(JobState.QUEUED, hold_id=None), None)]
    assert B.plan_sweep([*closed, *free], NOW) == B.SweepPlan((), ())


@given(st.sampled_from(list(JobState)), st.sampled_from(list(HoldState)), st.floats(-10, 10),
       st.lists(st.tuples(st.sampled_from([node(2), node(3)]), st.integers(0, 8)), max_size=3))
def test_every_pair_is_settled_dropped_or_left_and_never_both(state: JobState, hstate: HoldState, dt: float,
                                                               parts: list[tuple[str, int]]) -> None:
    j = job(state, parts=tuple(parts))
    h = hold(hstate, NOW + dt)
    plan = B.plan_sweep([(j, h)], NOW)
    assert not (plan.settle and plan.drop)
    assert bool(plan.settle) == (state in FINAL and hstate is HoldState.OPEN)
    assert bool(plan.drop) == (state not in FINAL and (hstate is not HoldState.OPEN or NOW + dt <= NOW))
    if state in FINAL:  # never more than the hold
        assert sum(B.closing(j).paid.values()) <= (SPEC.prompt_cap + j.max_tokens) * SPEC.price
    assert B.plan_sweep([(replace(j, hold_id="x" * 24), h)], NOW) == B.SweepPlan((), ())
