"""The slot rules without an engine: how many slots by default, and who gets a slot when one frees
(fewest held by its client, then arrival; never two models at once; a whole-engine request waits
for nothing to run and is not overtaken)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.orchestrator.planner import DoesNotFit, NodeCapacity, plan
from hearth.orchestrator.slots_rules import (
    MAX_PARALLEL,
    Running,
    Waiter,
    can_start,
    choose_parallel,
    fair_order,
    next_turn,
    slots_for,
)
from tests.orchestrator.test_planner import facts

MB = 1 << 20


def test_the_default_fills_half_the_memory_left_after_the_weights() -> None:
    assert choose_parallel(100 * MB, 1000 * MB) == 4  # 5 fit in half; the cap is 4
    assert choose_parallel(100 * MB, 500 * MB) == 2
    assert choose_parallel(100 * MB, 399 * MB) == 1
    assert choose_parallel(100 * MB, -5 * MB) == 1  # the weights alone do not fit: one slot
    assert choose_parallel(100 * MB, 10_000 * MB, cap=8) == 8
    assert choose_parallel(0, 0) == 4  # no KV cache to count


@given(st.integers(0, 1 << 40), st.integers(-(1 << 40), 1 << 40), st.integers(-3, 100))
def test_choose_parallel_stays_in_range_and_fits(kv: int, free: int, cap: int) -> None:
    n = choose_parallel(kv, free, cap)
    assert 1 <= n <= max(1, min(cap, MAX_PARALLEL))
    if n > 1 and kv > 0:
        assert n * kv <= free // 2
    assert choose_parallel(kv, free + kv * 2, cap) >= n  # more memory never means fewer slots


def test_slots_for_takes_hearth_parallel_when_set_and_caps_the_window_by_the_model() -> None:
    f = facts(n_layers=4, layer=10 * MB, embedding=MB, output=MB, kv_token=1024)
    assert slots_for(f, 2048, 1, asked=7) == 7
    free = int((f.file_bytes + 2 * 2 * f.kv_bytes(2048)) / 0.9) + 10  # room for two slots of 2048 tokens
    assert slots_for(f, 2048, free, None) == 2
    assert slots_for(f, 2048, f.file_bytes, None) == 1


def w(seq: int, client: str | None = "a", model: str | None = "m") -> Waiter:
    return Waiter(seq, client, model)


def test_a_slot_goes_to_the_client_holding_fewest_then_to_the_earliest() -> None:
    now = Running({"a": 3}, "m", 4)
    assert next_turn([w(1, "a"), w(2, "b"), w(3, "c")], now) == w(2, "b")
    assert next_turn([w(1, "a"), w(5, None)], now) == w(5, None)  # anonymous callers are one client
    assert next_turn([w(1, "a"), w(2, "a")], now) == w(1, "a")
    assert next_turn([w(1, "b")], Running({"a": 2, "b": 2}, "m", 5)) == w(1, "b")


def test_no_slot_free_or_another_model_or_a_load_means_nobody_starts() -> None:
    assert next_turn([w(1, "b")], Running({"a": 4}, "m", 4)) is None
    assert next_turn([w(1, "b", "other"), w(2, "c")], Running({"a": 1}, "m", 4)) is None  # nobody overtakes
    assert next_turn([w(1, "b", None), w(2, "c")], Running({"a": 1}, "m", 4)) is None
    assert next_turn([w(1, "b", "other")], Running({}, "m", 4)) == w(1, "b", "other")  # nothing runs: switch
    assert next_turn([w(1, "b", None)], Running({}, "m", 4)) == w(1, "b", None)
    assert not can_start(w(1), Running({}, None, 1, whole=True))
    assert next_turn([], Running({})) is None


def test_a_whole_engine_request_comes_before_clients_that_hold_slots() -> None:
    assert fair_order([w(1, "a"), w(2, "b", None)], {"a": 1}) == [w(2, "b", None), w(1, "a")]


ops = st.lists(st.one_of(
    st.tuples(st.just("arrive"), st.sampled_from(["a", "b", "c", None]), st.sampled_from(["m", "m", "m", "n"])),
    st.tuples(st.just("whole"), st.none(), st.none()),
    st.tuples(st.just("end"), st.integers(0, 20), st.none()),
), max_size=60)


@settings(max_examples=300)
@given(ops, st.integers(1, 5))
def test_a_simulated_pool_is_fair_bounded_and_runs_one_model(steps: list[tuple[str, object, object]],
                                                              slots: int) -> None:
    """Random arrivals and ends, slots handed out by next_turn as the pool does: at most `slots`
    requests of one model run, a whole-engine request runs alone, and every grant went to a
    waiter whose client held no more slots than any other waiter's (earlier at a tie)."""
    waiting: list[Waiter] = []
    running: list[Waiter] = []
    whole = False
    seq = 0

    def state() -> Running:
        held = Counter(r.client for r in running)
        model = running[0].model if running else None
        return Running(dict(held), model, slots, whole)

    def grant() -> None:
        nonlocal whole
        while (turn := next_turn(waiting, state())) is not None:
            held = state().held
            for other in waiting:
                if other is not turn and not other.whole and not turn.whole:
                    assert (held.get(turn.client, 0), turn.seq) <= (held.get(other.client, 0), other.seq)
            waiting.remove(turn)
            if turn.whole:
                assert not running
                whole = True
            else:
                running.append(turn)
            now = state()
            assert now.active <= slots and len({r.model for r in running}) <= 1
            assert not (whole and running)

    for kind, who, model in steps:
        if kind == "arrive":
            seq += 1
            waiting.append(Waiter(seq, who if isinstance(who, str) else None, str(model)))
        elif kind == "whole":
            seq += 1
            waiting.append(Waiter(seq, None, None))
        elif whole:
            whole = False
        elif running:
            running.pop(int(str(who)) % len(running))
        grant()
    while running or whole:  # everything ends: every waiter is served in the end
        if whole:
            whole = False
        else:
            running.pop(0)
        grant()
    assert not waiting


@given(st.integers(1, 1 << 36), st.integers(1, 1 << 40), st.integers(1, 4096), st.integers(64, 8192))
def test_a_model_that_fits_here_with_one_slot_fits_with_the_slots_chosen(layer: int, free: int, kv_token: int,
                                                                        n_ctx: int) -> None:
    f = facts(n_layers=4, layer=layer, embedding=layer // 8, output=layer // 8, kv_token=kv_token)
    here = [NodeCapacity("here", "here", "CPU", free, local=True)]
    try:
        plan(f, "m", here, n_ctx=n_ctx)
    except DoesNotFit:
        return
    plan(f, "m", here, n_ctx=n_ctx, parallel=slots_for(f, n_ctx, free, None))
