"""The batched decoder's scheduling rules, without a model: sequence ids, prompt chunks, fairness."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.engine import batch_rules as R
from hearth.engine.batch_rules import (
    Admitting,
    chunk_bounds,
    chunks_left,
    free_seq,
    limit_for,
    pick_chunk,
    pick_chunks,
)


@given(st.integers(1, 16), st.data())
def test_free_seq_is_the_lowest_unused_id(parallel: int, data: st.DataObject) -> None:
    used = data.draw(st.sets(st.integers(0, parallel - 1)))
    got = free_seq(used, parallel)
    if len(used) == parallel:
        assert got is None
    else:
        assert got is not None and got not in used and all(s in used for s in range(got))


@given(st.integers(1, 2000), st.integers(1, 128))
def test_chunks_cover_the_prompt_aligned_at_zero(n_prompt: int, chunk: int) -> None:
    fed, cuts = 0, []
    while fed < n_prompt:
        assert chunks_left(fed, n_prompt, chunk) == len(range(fed, n_prompt, chunk))
        start, end = chunk_bounds(fed, n_prompt, chunk)
        assert start == fed and start % chunk == 0 and 0 < end - start <= chunk
        cuts.append((start, end))
        fed = end
    assert chunks_left(fed, n_prompt, chunk) == 0
    assert all(e - s == chunk for s, e in cuts[:-1])  # only the last chunk may be short
    assert cuts[-1][1] == n_prompt


@settings(deadline=None)
@given(st.integers(1, 600), st.integers(4, 128), st.data())
def test_after_any_reused_prefix_the_chunks_are_cut_where_a_fresh_prompt_is(n_prompt: int, chunk: int,
                                                                           data: st.DataObject) -> None:
    fed = data.draw(st.integers(0, n_prompt - 1))
    fresh = {end for _, end in _cuts(0, n_prompt, chunk)}
    cuts = _cuts(fed, n_prompt, chunk)
    assert cuts[0][0] == fed and cuts[-1][1] == n_prompt
    assert all(end in fresh for _, end in cuts)  # every chunk ends where a fresh prompt's does
    assert all(0 < end - start <= chunk for start, end in cuts)


def _cuts(fed: int, n_prompt: int, chunk: int) -> list[tuple[int, int]]:
    cuts = []
    while fed < n_prompt:
        assert chunks_left(fed, n_prompt, chunk) == _left(fed, n_prompt, chunk)
        cuts.append(chunk_bounds(fed, n_prompt, chunk))
        fed = cuts[-1][1]
    return cuts


def _left(fed: int, n_prompt: int, chunk: int) -> int:
    n = 0
    while fed < n_prompt:
        fed, n = min((fed // chunk + 1) * chunk, n_prompt), n + 1
    return n


def test_chunk_bounds_refuses_finished_prompts() -> None:
    with pytest.raises(ValueError):
        chunk_bounds(100, 100, 64)
    with pytest.raises(ValueError):
        chunk_bounds(0, 100, 0)


def test_pick_chunk_prefers_short_prompts_then_the_earlier() -> None:
    assert pick_chunk([]) is None
    a, b, c = Admitting(0, 0, 5, 0), Admitting(1, 1, 2, 0), Admitting(2, 2, 2, 0)
    assert pick_chunk([a, b, c]) == 1
    assert pick_chunk([a, c]) == 2
    # passed over `patience` times: served first, the longest-waiting first
    assert pick_chunk([replace(a, skipped=4), b, c], patience=4) == 0
    assert pick_chunk([replace(a, skipped=4), replace(c, skipped=6), b], patience=4) == 2


@settings(max_examples=200)
@given(st.integers(1, 8), st.integers(0, 6),
       st.lists(st.tuples(st.integers(0, 30), st.integers(1, 12)), min_size=1, max_size=30))
def test_no_admitting_request_waits_longer_than_the_bound(parallel: int, patience: int,
                                                         arrivals: list[tuple[int, int]]) -> None:
    """Requests arrive (at a step, with a prompt of so many chunks) into `parallel` slots; each
    step one gets a chunk. None is passed over more than patience + parallel - 1 steps in a row,
    and every one is served in the end."""
    waiting = sorted(arrivals)
    slots: dict[int, Admitting] = {}
    order = served = 0
    step = 0
    while waiting or slots:
        while waiting and waiting[0][0] <= step and (seq := free_seq(slots, parallel)) is not None:
            slots[seq] = Admitting(seq, order, waiting.pop(0)[1], 0)
            order += 1
        pick = pick_chunk(list(slots.values()), patience)
        assert (pick is None) == (not slots)
        for seq, a in list(slots.items()):
            if seq == pick:
                assert a.skipped <= patience + parallel - 1
                if a.remaining == 1:
                    del slots[seq]
                    served += 1
                else:
                    slots[seq] = replace(a, remaining=a.remaining - 1, skipped=0)
            else:
                slots[seq] = replace(a, skipped=a.skipped + 1)
        step += 1
        assert step < 10_000
    assert served == len(arrivals)


@given(st.one_of(st.none(), st.integers(-5, 5000)), st.integers(1, 4000), st.integers(1, 4096))
def test_limit_stays_within_the_sequence(max_tokens: int | None, n_prompt: int, n_ctx_seq: int) -> None:
    limit = limit_for(max_tokens, n_prompt, n_ctx_seq)
    assert 0 <= limit <= max(0, n_ctx_seq - n_prompt)
    if max_tokens is not None:
        assert limit <= max(0, max_tokens)


@given(st.lists(st.integers(0, 3), max_size=300), st.lists(st.integers(0, 3), max_size=300), st.integers(1, 64))
def test_reusable_is_whole_chunks_of_the_common_prefix_short_of_the_prompt(kept: list[int], prompt: list[int],
                                                                          chunk: int) -> None:
    n = R.reusable(kept, prompt, chunk)
    assert n % chunk == 0 and 0 <= n
    assert kept[:n] == prompt[:n]
    assert n < len(prompt) or n == 0


@given(st.lists(st.integers(0, 3), max_size=300), st.lists(st.integers(0, 3), max_size=300), st.integers(1, 64),
       st.integers(0, 300))
def test_reuse_by_token_takes_every_shared_token_and_exact_only_canonical_chunks(
        kept: list[int], prompt: list[int], chunk: int, canon: int) -> None:
    canon = canon // chunk * chunk
    loose = R.reusable(kept, prompt, chunk, exact=False)
    exact = R.reusable(kept, prompt, chunk, canon=canon)
    assert kept[:loose] == prompt[:loose] and (loose < len(prompt) or loose == 0)
    assert loose == (min(R.common(kept, prompt), len(prompt) - 1) if prompt else 0)
    assert exact % chunk == 0 and exact <= min(canon, loose)
    assert exact <= loose


@given(st.integers(0, 500), st.integers(0, 500), st.integers(0, 800), st.integers(1, 64))
def test_the_canonical_prefix_grows_only_from_a_canonical_boundary(reused: int, canon: int, fed: int,
                                                                 chunk: int) -> None:
    canon = canon // chunk * chunk
    fed = max(fed, reused)
    after = R.canonical_after(reused, canon, fed, chunk)
    assert after % chunk == 0 and after <= fed
    if reused <= canon and reused % chunk == 0:
        assert after == fed // chunk * chunk
    else:
        assert after <= min(reused, canon)


def test_pick_seq_by_token_reuses_the_generated_reply_too() -> None:
    turn1 = list(range(40)) + [100, 101, 102]  # prompt, then the reply decoded after it
    prompt = turn1 + [7, 8, 9]  # the next turn of the chat
    assert R.pick_seq({1: turn1}, set(), 2, prompt, 64, exact=False) == (1, 43)
    assert R.pick_seq({1: turn1}, set(), 2, prompt, 64, canon={1: 0}) == (0, 0)  # exact: nothing whole
    long = list(range(300))
    assert R.pick_seq({1: long}, set(), 2, long + [1], 64, canon={1: 128}) == (1, 128)


def test_pick_seq_prefers_the_longest_reuse_then_the_lowest_free() -> None:
    prompt = list(range(200))
    kept = {0: [9] * 128, 1: list(range(64)), 2: list(range(150))}
    assert R.pick_seq(kept, set(), 4, prompt, 64) == (2, 128)
    assert R.pick_seq(kept, {2}, 4, prompt, 64) == (1, 64)
    assert R.pick_seq(kept, {1, 2}, 4, prompt, 64) == (0, 0)
    assert R.pick_seq({}, {0}, 4, prompt, 64) == (1, 0)
    assert R.pick_seq(kept, {0, 1, 2, 3}, 4, prompt, 64) is None


@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 8)), max_size=10), st.integers(1, 12))
def test_pick_chunks_takes_one_chunk_each_in_pick_chunk_order(specs: list[tuple[int, int]], most: int) -> None:
    admitting = [Admitting(i, i, remaining, skipped) for i, (remaining, skipped) in enumerate(specs)]
    picked = pick_chunks(admitting, most)
    assert len(picked) == min(most, len(admitting)) and len(set(picked)) == len(picked)
    if admitting:
        assert picked[0] == pick_chunk(admitting)
    rest = [a for a in admitting if a.seq not in picked[:1]]
    if len(picked) > 1:
        assert picked[1] == pick_chunk(rest)
