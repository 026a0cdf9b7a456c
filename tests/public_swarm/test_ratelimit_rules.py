"""The coordinator's token buckets and limit settings (ratelimit_rules), pure: driven by a made-up clock."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hearth.public_swarm.coordinator.ratelimit_rules import (
    DEFAULT_LIMITS,
    GENEROUS,
    Bucket,
    Buckets,
    Limits,
    LimitsInvalid,
    Rate,
    address_key,
    refill,
    retry_after,
    take,
)

rates = st.builds(Rate, st.floats(0.01, 1000, allow_nan=False), st.integers(1, 500))
gaps = st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=300)


@given(rates, gaps)
@settings(max_examples=200, deadline=None)
def test_never_more_admitted_than_burst_plus_rate_times_time(rate: Rate, steps: list[float]) -> None:
    buckets = Buckets(rate, 10)
    now, admitted = 0.0, 0
    for gap in steps:
        now += gap
        admitted += buckets.admit("k", now).admitted
    assert admitted <= rate.burst + rate.per_s * now + 1e-6


@given(rates, st.floats(0, 1e6, allow_nan=False))
@example(Rate(0.5, 1), 0.8)  # found by CI: (0.8 + 2) - 0.8 refills 0.99999... of a token
@settings(max_examples=200, deadline=None)
def test_a_full_bucket_admits_burst_then_says_when_to_come_back(rate: Rate, start: float) -> None:
    buckets = Buckets(rate, 10)
    assert all(buckets.admit("k", start).admitted for _ in range(rate.burst))
    refused = buckets.admit("k", start)
    assert not refused.admitted and refused.retry_after >= 1
    assert refused.retry_after >= 1 / rate.per_s - 1e-9  # never sooner than a token is back
    assert buckets.admit("k", start + refused.retry_after).admitted  # and back by then


@given(rates, st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=50, unique=True))
@settings(max_examples=100, deadline=None)
def test_one_key_exhausted_leaves_the_others_whole(rate: Rate, keys: list[str]) -> None:
    buckets = Buckets(rate, 1000)
    for _ in range(rate.burst + 3):
        buckets.admit(keys[0], 5.0)
    assert not buckets.admit(keys[0], 5.0).admitted
    assert all(buckets.admit(k, 5.0).admitted for k in keys[1:])


@given(st.integers(1, 50), st.lists(st.integers(0, 10_000), max_size=400))
@settings(max_examples=100, deadline=None)
def test_a_flood_of_new_keys_never_grows_the_table_past_max_keys(max_keys: int, keys: list[int]) -> None:
    buckets = Buckets(Rate(1.0, 2), max_keys)
    for i, k in enumerate(keys):
        buckets.admit(str(k), float(i))
        assert len(buckets) <= max_keys
    if keys:
        assert str(keys[-1]) in buckets  # the most recent is kept


@given(rates, st.floats(0, 100, allow_nan=False), st.floats(0, 100, allow_nan=False), st.floats(0, 500))
def test_a_clock_that_goes_back_adds_nothing(rate: Rate, at: float, back: float, tokens: float) -> None:
    bucket = Bucket(min(tokens, rate.burst), at)
    assert refill(bucket, rate, at - back) == bucket
    after, _ = take(bucket, rate, at - back)
    assert after.tokens <= bucket.tokens


@given(st.floats(0, 1e5, allow_nan=False))
def test_retry_after_is_whole_seconds_never_short(wait: float) -> None:
    r = retry_after(wait)
    assert isinstance(r, int) and r >= 1 and r >= wait - 1e-6 and r <= max(1.0, wait + 1)


def test_addresses_are_keyed_as_the_free_allowance_keys_them() -> None:
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")  # one /64
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("testclient") == "?testclient"  # no IP: keyed by its text
    assert len(address_key("x" * 10_000)) <= 65


@pytest.mark.parametrize("bad", [
    lambda: Rate(0, 1), lambda: Rate(-1, 1), lambda: Rate(float("nan"), 1), lambda: Rate(1, 0),
    lambda: Rate(1, 1.5), lambda: Rate(True, 1), lambda: Limits(jobs_per_requester=0),
    lambda: Limits(jobs_per_worker=65), lambda: Limits(free_tokens_per_day=-1), lambda: Buckets(Rate(1, 1), 0),
])
def test_out_of_range_settings_are_refused_with_a_clear_error(bad: object) -> None:
    with pytest.raises(LimitsInvalid):
        bad()  # type: ignore[operator]


def test_defaults_are_a_deployments_and_generous_never_binds() -> None:
    assert DEFAULT_LIMITS.per_address.per_s >= DEFAULT_LIMITS.per_identity.per_s
    assert DEFAULT_LIMITS.free_tokens_per_day == 20_000 and DEFAULT_LIMITS.welcomes_per_address == 3
    assert GENEROUS.per_address.burst >= 10**6
