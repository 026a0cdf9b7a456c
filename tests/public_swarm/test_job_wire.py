"""The jobs API's pure parts: the submit body, the price header, and the estimated wait."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hearth.errors import InvalidRequest
from hearth.public_swarm.coordinator.job_wire import MAX_WAIT_S, JobSubmit, estimate_wait, max_price

speeds = st.lists(st.floats(min_value=0.1, max_value=1e4), min_size=1, max_size=8)
lengths = st.lists(st.integers(min_value=0, max_value=10**5), min_size=1, max_size=20)


def test_the_wait_is_position_times_the_mean_job_time_over_the_workers() -> None:
    # mean job: 100 tokens at 20 tokens/s = 5 s; 6 ahead, 2 workers: 15 s
    assert estimate_wait(6, [50, 150], [10.0, 30.0]) == 15.0
    assert estimate_wait(0, [50], [10.0]) == 0.0


@given(st.integers(min_value=0, max_value=10**6), lengths, speeds)
def test_the_wait_grows_with_the_position_and_shrinks_with_workers(position: int, tokens: list[int],
                                                                   tps: list[float]) -> None:
    wait = estimate_wait(position, tokens, tps)
    more_ahead = estimate_wait(position + 1, tokens, tps)
    more_workers = estimate_wait(position, tokens, [*tps, sum(tps) / len(tps)])
    if wait is not None:
        assert 0 <= wait <= MAX_WAIT_S
        assert more_ahead is None or more_ahead >= wait
        assert more_workers is not None and more_workers <= wait + 0.1


@given(st.one_of(st.none(), st.integers(max_value=-1)), lengths, speeds)
def test_unknown_when_not_queued(position: int | None, tokens: list[int], tps: list[float]) -> None:
    assert estimate_wait(position, tokens, tps) is None


def test_unknown_without_recent_jobs_or_live_workers() -> None:
    assert estimate_wait(3, [], [10.0]) is None
    assert estimate_wait(3, [100], []) is None
    assert estimate_wait(3, [100], [float("nan"), 0.0]) is None
    assert estimate_wait(10**6, [10**5], [0.1]) is None  # past a week: not an estimate


def test_a_submit_has_messages_or_a_prompt_and_maps_onto_the_job_request() -> None:
    job = JobSubmit.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                    "stop": "\n", "temperature": 0.5, "seed": 7})
    request = job.job_request()
    assert job.kind == "chat" and request.max_tokens == 256
    assert (request.sampling.stop, request.sampling.temperature, request.sampling.seed) == (["\n"], 0.5, 7)
    assert JobSubmit.model_validate({"model": "m", "prompt": "Once"}).kind == "completion"
    for bad in ({"model": "m"}, {"model": "m", "prompt": "a", "messages": [{"role": "user", "content": "b"}]},
                {"model": "m", "prompt": "a\x00"}, {"model": "m", "prompt": "\ud800"},
                {"model": "m", "prompt": "a", "stream": True}, {"model": "m", "prompt": "a", "max_tokens": "5"}):
        with pytest.raises(ValidationError):
            JobSubmit.model_validate(bad)


@pytest.mark.parametrize(("header", "ceiling"), [(None, None), ("0", 0), (" 1200 ", 1200)])
def test_the_price_header(header: str | None, ceiling: int | None) -> None:
    assert max_price(header) == ceiling


@pytest.mark.parametrize("header", ["", "-1", "1.5", "x", "9" * 13])
def test_a_bad_price_header_is_a_400(header: str) -> None:
    with pytest.raises(InvalidRequest):
        max_price(header)


def test_a_price_refusal_from_the_coordinator_becomes_price_above_ceiling_with_its_words() -> None:
    """`hearth jobs submit --max-price 1` once crashed with a TypeError rebuilding this error."""
    from hearth.public_swarm.coordinator.client import refusal
    from hearth.public_swarm.pricing import PriceAboveCeiling

    body = (b'{"error": {"message": "smollm2-135m costs 169 credits per million tokens, above your ceiling of 1",'
            b' "type": "invalid_request_error", "code": "price_above_ceiling", "param": "max_price"}}')
    error = refusal(402, body, "POST /v1/jobs")
    assert isinstance(error, PriceAboveCeiling) and "169" in error.message and error.http_status == 402
