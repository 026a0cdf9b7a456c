"""The free allowance's pure rules (no database): address keys, UTC days, take and give-back."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.public_swarm.coordinator.allowance_rules import (
    DAY_S,
    AllowanceInputInvalid,
    FreeAllowanceUsed,
    Usage,
    client_key,
    day_of,
    left_today,
    plan_give_back,
    plan_take,
    resets_at,
)

PER_DAY = 1000
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
counts = st.integers(min_value=1, max_value=3 * PER_DAY)


def test_ipv4_counts_alone_and_ipv6_by_its_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"


@given(st.ip_addresses(v=6))
def test_every_address_of_a_64_shares_one_key(ip: ipaddress.IPv6Address) -> None:
    net = ipaddress.IPv6Network((ip, 64), strict=False)
    other = net.network_address + (int(ip) * 7919 + 1) % (1 << 64)
    if ip.ipv4_mapped is None and other.ipv4_mapped is None:
        assert client_key(str(ip)) == client_key(str(other)) == str(net)
        assert len(client_key(str(ip))) <= 64


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


@given(st.one_of(st.text(max_size=120).filter(lambda t: not _is_ip(t)), st.integers(), st.none(),
                 st.binary(max_size=20), st.just("1" * 101)))
def test_anything_else_is_refused_clearly(junk: object) -> None:
    with pytest.raises(AllowanceInputInvalid):
        client_key(junk)


@given(times)
def test_a_day_ends_at_the_next_utc_midnight(t: float) -> None:
    day = day_of(t)
    assert day * DAY_S <= t < resets_at(day) == (day + 1) * DAY_S


@given(st.lists(st.tuples(st.booleans(), counts), max_size=40), times)
def test_takes_never_overdraw_and_give_backs_never_go_negative(ops: list[tuple[bool, int]], now: float) -> None:
    today = day_of(now)
    usage: Usage | None = None
    taken = 0
    for is_take, n in ops:
        if is_take:
            before = left_today(usage, today, PER_DAY)
            try:
                usage = plan_take(usage, n, today, PER_DAY, now)
                taken += n
                assert left_today(usage, today, PER_DAY) == before - n
            except FreeAllowanceUsed as exc:
                assert n > before and exc.left == before and exc.http_status == 429
                assert exc.resets_at == resets_at(today) and 1 <= (exc.retry_after or 0) <= DAY_S
        else:
            after = plan_give_back(usage, n, today)
            if after is not None:
                assert usage is not None and after.used == max(0, usage.used - n)
                usage = after
        assert usage is None or 0 <= usage.used <= PER_DAY


@given(st.integers(min_value=0, max_value=PER_DAY), counts, times)
def test_a_new_day_starts_whole(used: int, n: int, now: float) -> None:
    today = day_of(now)
    yesterday = Usage(today - 1, used)
    assert left_today(yesterday, today, PER_DAY) == PER_DAY
    assert plan_give_back(yesterday, n, today) is None  # yesterday's tokens return nothing today
    if n <= PER_DAY:
        assert plan_take(yesterday, n, today, PER_DAY, now) == Usage(today, n)


def test_the_refusal_says_what_is_left_and_when_it_resets() -> None:
    now = 10 * DAY_S + 3600.0
    with pytest.raises(FreeAllowanceUsed) as caught:
        plan_take(Usage(10, 900), 200, 10, PER_DAY, now)
    exc = caught.value
    assert (exc.left, exc.resets_at, exc.retry_after, exc.code) == (100, 11 * DAY_S, 23 * 3600, "free_allowance_used")
    assert "100 are left" in exc.message and "23 h 0 min" in exc.message


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "5", 10**10])
def test_token_counts_are_checked(bad: object) -> None:
    with pytest.raises(AllowanceInputInvalid):
        plan_take(None, bad, 0, PER_DAY, 0.0)  # type: ignore[arg-type]
