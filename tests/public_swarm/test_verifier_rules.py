"""The spot-check plan, with no I/O (issue 11, `verifier_rules`): which finished job gets a check or a
canary, what those jobs hold (a canary looks like the job it follows), and what a check's answer means."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from hearth.public_swarm.coordinator import verifier_rules as V
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import Job, JobState
from hearth.public_swarm.protocol.messages import MAX_CHECK_TOKENS, JobRequest, Sampling
from tests.public_swarm.dispatch_kit import chat
from tests.public_swarm.jobs_kit import digest, node

W1, W2 = node(1), node(2)


def done(temperature: float = 0.0, parts: tuple[tuple[str, int], ...] = ((W1, 3),), purpose: str = "user",
         ids: tuple[int, ...] = (5, 6, 7), request: JobRequest | None = None, sampler: str | None = None) -> Job:
    req = request or chat().model_copy(update={"sampling": Sampling(temperature=temperature)})
    spec = JobSpec(req, "chat", "m", 599, 40, "192.0.2.1")
    return Job(id="job00000001", requester="alice", digest=digest("a"), request=spec.to_json(), max_tokens=16,
               hold_id=None, state=JobState.DONE, worker_id=W1, attempts=0, text="abc", tokens=len(ids), error=None,
               created_at=0.0, updated_at=1.0, lease_expires=None, token_ids=ids, parts=parts,
               result={"finisher": parts[-1][0], "prompt_tokens": 9, **({"sampler": sampler} if sampler else {})},
               purpose=purpose)


@given(rate=st.floats(0, 1), draw=st.floats(0, 1, exclude_max=True), temperature=st.sampled_from([0.0, 0.7]))
def test_a_single_worker_job_is_checked_at_its_rate_greedy_by_a_check_sampled_by_a_canary(
        rate: float, draw: float, temperature: float) -> None:
    plan = V.plan(done(temperature), rate, draw)
    if draw >= rate:
        assert plan.kind == "none"
    else:
        assert plan.kind == ("check" if temperature == 0 else "canary") and plan.worker == W1


@given(draw=st.floats(0, 1, exclude_max=True))
def test_canaries_are_always_checked_and_checks_never(draw: float) -> None:
    assert V.plan(done(0.0, purpose="canary"), 0.0, draw).kind == "check"
    assert V.plan(done(0.0, purpose="check"), 1.0, draw).kind == "none"


def test_failover_jobs_and_unfinished_ones_are_not_checked() -> None:
    assert V.plan(done(parts=((W1, 1), (W2, 2))), 1.0, 0.0).kind == "none"
    assert V.plan(replace(done(), state=JobState.FAILED), 1.0, 0.0).kind == "none"
    assert V.plan(done(ids=()), 1.0, 0.0).kind == "none"


def test_a_check_scores_the_first_ids_of_the_job_without_the_free_tier() -> None:
    long = done(ids=tuple(range(MAX_CHECK_TOKENS + 5)))
    body = V.check_body(long)
    check, cut = V.check_request(body)
    assert len(check.token_ids) == MAX_CHECK_TOKENS and cut
    assert JobSpec.from_json(body).free_address is None and JobSpec.from_json(body).price == 599
    assert V.check_request(V.check_body(done()))[1] is False


@given(pick=st.integers(0, 10**6), chat_shape=st.booleans(), temperature=st.floats(0.1, 2))
def test_a_canary_has_the_shape_of_the_job_it_follows_and_is_greedy(pick: int, chat_shape: bool,
                                                                    temperature: float) -> None:
    sampling = Sampling(temperature=temperature, seed=3)
    req = (chat(max_tokens=33) if chat_shape else JobRequest(prompt="Once upon", max_tokens=33)).model_copy(
        update={"sampling": sampling})
    spec = V.canary_spec(done(request=req), pick)
    assert (spec.request.messages is not None) == chat_shape and spec.request.max_tokens == 33
    assert V.is_greedy(spec.request) and spec.free_address is None and spec.kind == "chat"
    text = spec.request.messages[0].content if spec.request.messages else spec.request.prompt
    assert text in V.CANARY_PROMPTS


def test_judge_needs_both_good_scores_and_the_streamed_text() -> None:
    assert V.judge([0, 0, 0], [0.0, 0.0, 0.0], "abc", "abc", top_k=8, cut=False).ok
    wrong = V.judge([8, 8, 8], [9.0, 9.0, 9.0], "abc", "abc", top_k=8, cut=False)
    assert not wrong.ok and wrong.reason
    lied = V.judge([0, 0, 0], [0.0, 0.0, 0.0], "abc", "xyz", top_k=8, cut=False)
    assert not lied.ok and "detokenisation" in lied.reason


@given(prompt=st.integers(-10, 10**6), scored=st.integers(0, MAX_CHECK_TOKENS))
def test_the_verifier_is_paid_for_at_most_the_prompt_cap(prompt: int, scored: int) -> None:
    spec = JobSpec(chat(), "chat", "m", 599, 40)
    assert V.verifier_pay(prompt, scored, spec) == (min(max(prompt, 0), 40) + scored) * 599


def test_only_old_queued_checks_and_canaries_are_dropped() -> None:
    queued = replace(done(purpose="check"), state=JobState.QUEUED, created_at=0.0)
    assert V.too_old(queued, V.CHECK_WAIT_S + 1) and not V.too_old(queued, V.CHECK_WAIT_S - 1)
    assert not V.too_old(replace(queued, purpose="user"), 10**9)


@given(rate=st.floats(0, 1), draw=st.floats(0, 1, exclude_max=True))
def test_a_sampled_job_whose_worker_names_its_sampler_gets_a_same_seed_re_run(rate: float, draw: float) -> None:
    plan = V.plan(done(0.7, sampler="s1"), rate, draw)
    assert plan.kind == ("none" if draw >= rate else "check")


def test_a_replay_check_carries_the_jobs_seed_its_sampler_and_the_samplers_top_k() -> None:
    job = done(0.7, sampler="s1")
    body = V.check_body(job)
    request, cut = V.check_request(body)
    assert request.replay and request.top_k == V.verify.SAMPLER_TOP_K and not cut
    assert V.replay_sampler(body) == "s1"
    seed = JobSpec.from_json(body).request.sampling.seed
    assert seed == V.job_seed(job.id) == V.seeded(JobSpec.from_json(job.request).request, job.id).sampling.seed
    own = done(request=chat().model_copy(update={"sampling": Sampling(temperature=0.7, seed=99)}), sampler="s1")
    assert JobSpec.from_json(V.check_body(own)).request.sampling.seed == 99  # the requester's seed is kept
    greedy = V.check_body(done(0.0))
    assert not V.check_request(greedy)[0].replay and V.replay_sampler(greedy) is None
    assert JobSpec.from_json(greedy).request.sampling.seed is None


@given(st.text(min_size=1, max_size=30))
def test_job_seeds_are_fixed_by_the_job_id_and_fit_32_bits(job_id: str) -> None:
    assert V.job_seed(job_id) == V.job_seed(job_id) and 0 <= V.job_seed(job_id) < 2**32
    greedy = chat()
    assert V.seeded(greedy, job_id) is greedy  # a greedy request needs no seed


def test_job_seeds_differ_between_jobs() -> None:
    assert len({V.job_seed(f"job{i:08d}") for i in range(1000)}) > 990


def test_judge_of_a_replay_compares_picks_and_still_needs_the_streamed_text() -> None:
    ids, ranks, gaps = [5, 6, 7], [0, 3, 0], [0.0, 2.5, 0.0]  # a sampled token far below the best: fine
    assert V.judge(ranks, gaps, "abc", "abc", top_k=40, cut=False, replay=(ids, ids)).ok
    assert not V.judge(ranks, gaps, "abc", "abc", top_k=40, cut=False).ok  # as a greedy check it fails
    assert not V.judge(ranks, gaps, "abc", "abc", top_k=40, cut=False, replay=(ids, [5, 9, 8])).ok
    assert not V.judge(ranks, gaps, "abc", "xyz", top_k=40, cut=False, replay=(ids, ids)).ok
