"""The spot-check rules (hearth.public_swarm.verify), pure: hypothesis over ranks, gaps and texts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hearth.public_swarm.protocol.messages import ChatMessage, CheckRequest, JobRequest, Resume, Sampling
from hearth.public_swarm.runner_rules import engine_fields, score_fields
from hearth.public_swarm.verify import (
    MAX_STOP_TAIL,
    MIN_RATE,
    NEW_RATE,
    SAMPLER_TOP_K,
    TIE_GAP,
    TOP_K,
    check_rate,
    max_flips,
    max_misses,
    replay_verdict,
    text_agrees,
    verdict,
)

LENGTH = st.integers(1, 300)
TIE = st.floats(0, TIE_GAP, allow_nan=False)
BIG = st.floats(TIE_GAP, 1e5, allow_nan=False, exclude_min=True)


@given(LENGTH)
def test_the_scorers_own_greedy_output_passes(n: int) -> None:
    assert verdict([0] * n, [0.0] * n, top_k=TOP_K).ok


@given(LENGTH, st.data())
def test_a_few_near_tie_flips_pass(n: int, data: st.DataObject) -> None:
    where = data.draw(st.sets(st.integers(0, n - 1), max_size=max_flips(n)))
    ranks = [data.draw(st.integers(1, TOP_K - 1)) if i in where else 0 for i in range(n)]
    gaps = [data.draw(TIE) if i in where else 0.0 for i in range(n)]
    assert verdict(ranks, gaps, top_k=TOP_K) == verdict(ranks, gaps, top_k=TOP_K)
    assert verdict(ranks, gaps, top_k=TOP_K).ok


@given(LENGTH, st.data())
def test_too_many_flips_fail_even_at_near_ties(n: int, data: st.DataObject) -> None:
    k = max_flips(n) + 1
    if k > n:
        return
    where = set(data.draw(st.permutations(range(n)))[:k])
    ranks = [1 if i in where else 0 for i in range(n)]
    v = verdict(ranks, [TIE_GAP / 2 if i in where else 0.0 for i in range(n)], top_k=TOP_K)
    assert not v.ok and "differ" in v.reason


@given(LENGTH, st.data())
def test_one_token_outside_the_top_k_fails(n: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, n - 1))
    ranks, gaps = [0] * n, [0.0] * n
    ranks[i], gaps[i] = TOP_K, data.draw(st.floats(0, 1e5))
    v = verdict(ranks, gaps, top_k=TOP_K)
    assert not v.ok and v.reason.startswith(f"Token {i} ")


@given(LENGTH, st.data())
def test_one_flip_far_from_a_tie_fails(n: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, n - 1))
    ranks, gaps = [0] * n, [0.0] * n
    ranks[i], gaps[i] = data.draw(st.integers(1, TOP_K - 1)), data.draw(BIG)
    assert not verdict(ranks, gaps, top_k=TOP_K).ok


@given(st.lists(st.tuples(st.integers(0, TOP_K), st.floats(0, 50)), min_size=1, max_size=60), st.data())
def test_a_worse_token_never_turns_a_failure_into_a_pass(scores: list[tuple[int, float]], data: st.DataObject) -> None:
    ranks, gaps = [r for r, _ in scores], [g if r else 0.0 for r, g in scores]
    i = data.draw(st.integers(0, len(ranks) - 1))
    worse_r, worse_g = list(ranks), list(gaps)
    worse_r[i] = max(ranks[i], data.draw(st.integers(1, TOP_K)))
    worse_g[i] = gaps[i] + data.draw(st.floats(0, 50))
    if not verdict(ranks, gaps, top_k=TOP_K).ok:
        assert not verdict(worse_r, worse_g, top_k=TOP_K).ok
    assert verdict(ranks, gaps, top_k=TOP_K).reason == "" or not verdict(ranks, gaps, top_k=TOP_K).ok


@given(st.lists(st.integers(0, TOP_K), max_size=5), st.lists(st.floats(), max_size=5))
def test_malformed_scores_fail_with_a_reason(ranks: list[int], gaps: list[float]) -> None:
    if len(ranks) == len(gaps) and ranks and all(g >= 0 for g in gaps):
        return
    v = verdict(ranks, gaps, top_k=TOP_K)
    assert not v.ok and v.reason


@given(st.text(max_size=200), st.integers(0, MAX_STOP_TAIL))
def test_text_may_lose_what_a_stop_string_cut(text: str, cut: int) -> None:
    assert text_agrees(text, text)
    assert text_agrees(text, text[:max(0, len(text) - cut)])


@given(st.text(min_size=1, max_size=100), st.text(min_size=1, max_size=20))
def test_text_that_is_not_the_ids_disagrees(text: str, other: str) -> None:
    streamed = other + text
    if text.startswith(streamed) or streamed == text:
        return
    assert not text_agrees(text, streamed)
    assert not text_agrees(text, text + other)  # more text than the ids hold
    assert text_agrees(text, text + other, cut=True)  # ... unless the check covered only a prefix


def test_text_cut_by_more_than_a_stop_string_disagrees() -> None:
    scored = "x" * (MAX_STOP_TAIL + 10)
    assert not text_agrees(scored, scored[:9])


@given(st.integers(0, 10_000), st.integers(0, 100))
def test_check_rate_stays_between_the_floor_and_the_new_rate(streak: int, failed: int) -> None:
    rate = check_rate(streak, failed)
    assert MIN_RATE <= rate <= NEW_RATE
    assert check_rate(streak + 1, failed) <= rate
    assert check_rate(streak, failed + 1) >= rate


@given(st.integers(0, 100))
def test_new_or_just_failed_workers_get_the_new_rate(failed: int) -> None:
    assert check_rate(0, failed) == NEW_RATE


def test_a_long_verified_run_falls_to_the_minimum() -> None:
    assert check_rate(10_000, 0) == MIN_RATE
    assert check_rate(10, 0) == NEW_RATE / 2
    assert check_rate(10_000, 3) == 4 * MIN_RATE


def test_a_check_scores_the_jobs_input_after_what_earlier_workers_streamed() -> None:
    chat = JobRequest(messages=[ChatMessage(role="user", content="Hi")], max_tokens=9,
                      sampling=Sampling(temperature=0.7, seed=3), resume=Resume(text="Hel", token_ids=[5, 6]))
    assert score_fields(chat, CheckRequest(token_ids=[7, 8], top_k=4)) == {
        "messages": [{"role": "user", "content": "Hi"}], "context": [5, 6], "token_ids": [7, 8], "top_k": 4}
    plain = JobRequest(prompt="Once", max_tokens=4)
    assert score_fields(plain, CheckRequest(token_ids=[1])) == {"prompt": "Once", "token_ids": [1], "top_k": 8}
    replay = CheckRequest(token_ids=[7, 8], top_k=SAMPLER_TOP_K, replay=True)
    assert score_fields(chat, replay) == {
        "messages": [{"role": "user", "content": "Hi"}], "context": [5, 6], "token_ids": [7, 8], "top_k": SAMPLER_TOP_K,
        "replay": True, "temperature": 0.7, "top_p": 1.0, "seed": 3}


def test_top_k_1_is_greedy_for_the_engine_as_for_the_checks() -> None:
    """The engine ignores a job's top_k (it keeps 40), so top_k 1 must reach it as temperature 0:
    the coordinator checks such a job token by token, as a greedy one."""
    op, fields = engine_fields(JobRequest(prompt="Once", max_tokens=4, sampling=Sampling(temperature=0.9, top_k=1)))
    assert op == "complete" and fields["temperature"] == 0.0
    assert engine_fields(JobRequest(prompt="Once", max_tokens=4, sampling=Sampling(temperature=0.9)))[1][
        "temperature"] == 0.9


@given(st.lists(st.integers(0, 50_000), min_size=1, max_size=300))
def test_a_replay_whose_picks_are_the_tokens_passes(ids: list[int]) -> None:
    assert replay_verdict(ids, ids, [0] * len(ids)).ok


@given(st.lists(st.integers(0, 50_000), min_size=1, max_size=300), st.data())
def test_a_replay_passes_exactly_while_misses_are_within_the_budget(ids: list[int], data: st.DataObject) -> None:
    misses = data.draw(st.integers(0, len(ids)))
    at = data.draw(st.permutations(range(len(ids))))[:misses]
    picks = [t + 1 if i in at else t for i, t in enumerate(ids)]
    v = replay_verdict(ids, picks, [1] * len(ids))
    assert v.ok == (misses <= max_misses(len(ids))), v.reason
    assert v.ok or "same-seed" in v.reason


@given(st.lists(st.integers(0, 50_000), min_size=1, max_size=100), st.data())
def test_a_replayed_token_the_sampler_could_not_draw_fails(ids: list[int], data: st.DataObject) -> None:
    ranks = [0] * len(ids)
    ranks[data.draw(st.integers(0, len(ids) - 1))] = SAMPLER_TOP_K
    v = replay_verdict(ids, ids, ranks)
    assert not v.ok and "sampler draws from" in v.reason


@given(st.lists(st.integers(0, 9), max_size=5), st.lists(st.integers(0, 9), max_size=5),
       st.lists(st.integers(0, 9), max_size=5))
def test_a_malformed_replay_fails_with_a_reason(ids: list[int], picks: list[int], ranks: list[int]) -> None:
    v = replay_verdict(ids, picks, ranks)
    if not ids or len(picks) != len(ids) or len(ranks) != len(ids):
        assert not v.ok and "one of each per token" in v.reason
