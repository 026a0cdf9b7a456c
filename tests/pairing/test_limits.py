"""Per-address limits for the pairing listeners, driven with a made-up clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hearth.pairing.limits import ConnectionLimit, RateLimit, client_key


def test_an_ipv6_prefix_counts_as_one_address() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7" and client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::/64" and client_key("") == ""


def test_connections_are_bounded_per_address_and_in_all() -> None:
    limit = ConnectionLimit(per_key=2, total=3)
    assert limit.acquire("a") and limit.acquire("a") and not limit.acquire("a")
    assert limit.acquire("b") and not limit.acquire("c")  # three in all
    limit.release("a")
    assert limit.acquire("c") and limit.held == {"a": 1, "b": 1, "c": 1}
    limit.release("nobody")  # a stray release changes nothing
    assert limit.all == 3


def test_a_rate_limit_slides() -> None:
    rate = RateLimit(count=3, window=60.0)
    assert [rate.allow("a", t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert rate.allow("b", 3)  # others are not affected
    assert not rate.allow("a", 59.9) and rate.allow("a", 60.0)  # the event at 0 left the window


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.floats(0, 1000)), max_size=60))
def test_a_rate_limit_never_allows_more_than_its_count_in_a_window(events: list[tuple[str, float]]) -> None:
    rate = RateLimit(count=3, window=10.0, max_keys=2)
    allowed: dict[str, list[float]] = {}
    for key, now in sorted(events, key=lambda e: e[1]):
        if rate.allow(key, now):
            allowed.setdefault(key, []).append(now)
    for stamps in allowed.values():
        assert all(later - earlier >= 10.0 for earlier, later in zip(stamps, stamps[3:], strict=False))
