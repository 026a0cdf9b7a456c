"""The trust rules with no I/O (hypothesis): owners by network, the too-fast signal, routing rank,
and random event sequences through the transitions, checking the policy's promises: money moves
only when the rules say (vest after a streak, a day, or each passed check once trusted; forfeit on
each failure), no credits are lost or made, a failure resets the streak, and the third failure in
the window quarantines."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.public_swarm import verify
from hearth.public_swarm.coordinator import trust_rules as R
from hearth.public_swarm.coordinator.trust_rules import Move, Standing, TrustInputInvalid, TrustState
from tests.public_swarm.trust_kit import node

N = node(1)


def test_owners_are_networks_and_loopback_is_each_node_its_own() -> None:
    assert R.owner_of(N, "203.0.113.7") == R.owner_of(node(2), "203.0.113.250") == "203.0.113.0/24"
    assert R.owner_of(N, "203.0.114.7") != R.owner_of(N, "203.0.113.7")
    assert R.owner_of(N, "2001:db8:1:2:aa::1") == "2001:db8:1:2::/64"
    assert R.owner_of(N, "::ffff:203.0.113.9") == "203.0.113.0/24"
    assert R.owner_of(N, "127.0.0.1") == f"local:{N}" != R.owner_of(node(2), "127.0.0.1")
    assert R.owner_of(N, "::1") == f"local:{N}"


@given(st.ip_addresses())
def test_every_ip_address_has_an_owner_that_fits_the_column(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    owner = R.owner_of(N, str(ip))
    assert 0 < len(owner) <= 64
    assert owner == R.owner_of(N, str(ip))


@given(st.one_of(st.text(max_size=80), st.integers(), st.none()))
def test_anything_but_an_ip_address_is_refused_clearly(address: object) -> None:
    try:
        ipaddress.ip_address(address)  # type: ignore[arg-type]
    except ValueError:
        with pytest.raises(TrustInputInvalid):
            R.owner_of(N, address)  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_bad_node_ids_are_refused(node_id: str) -> None:
    if not R.NODE_ID.fullmatch(node_id):
        with pytest.raises(TrustInputInvalid):
            R.owner_of(node_id, "203.0.113.7")


@given(st.integers(0, 10_000), st.floats(0, 1e4, allow_nan=False), st.floats(-10, 1e4, allow_nan=False))
def test_too_fast_only_past_three_times_the_declared_speed(tokens: int, seconds: float, declared: float) -> None:
    reason = R.too_fast(tokens, seconds, declared)
    if tokens < R.TOO_FAST_MIN_TOKENS or declared <= 0:
        assert reason is None
    elif seconds > 0 and tokens / seconds <= R.TOO_FAST_FACTOR * declared:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(R.TOO_FAST)
        assert not R.counts_as_failure(reason)


def test_rank_puts_references_then_trusted_then_new_then_quarantined() -> None:
    base = R.new_standing(N, "o", 0.0)
    ref = R.new_standing(node(2), "o", 0.0, reference=True)
    trusted = R.after_verified(base, 1.0).standing.__class__(**{**base.__dict__, "state": TrustState.TRUSTED})
    quarantined = Standing(**{**base.__dict__, "state": TrustState.QUARANTINED, "quarantined_until": 9.0})
    proven = Standing(**{**base.__dict__, "verified": 5, "streak": 5})
    order = sorted([quarantined, base, proven, trusted, ref], key=Standing.rank)
    assert order == [ref, trusted, proven, base, quarantined]
    assert ref.check_rate() == 0.0 and base.check_rate() == 0.25
    assert not quarantined.may_serve(8.9) and quarantined.may_serve(9.0)


EVENTS = st.lists(st.tuples(st.sampled_from(["job", "abort", "suspect", "pass", "fail", "time", "mismatch"]),
                            st.floats(1, 40_000)), max_size=120)


@settings(max_examples=300)
@given(EVENTS, st.booleans())
def test_random_histories_keep_the_policy(events: list[tuple[str, float]], reference: bool) -> None:
    now = 1_000.0
    s = R.new_standing(N, "o", now, reference=reference)
    escrow = vested = forfeited = earned = 0
    failures: list[float] = []
    for kind, dt in events:
        now += dt
        move = Move.NONE
        before = s
        if kind == "job":
            if not s.may_serve(now):
                continue
            s = R.after_job(s, now)
            earned += 100
            if s.in_escrow(now):
                escrow += 100
            else:
                vested += 100
        elif kind == "abort":
            s = R.after_abort(s, now)
            assert s.aborted == before.aborted + 1
            assert s.streak in (0, before.streak)
        elif kind == "suspect":
            s = R.after_suspicion(s, now)
            assert (s.streak, s.suspicions) == (0, before.suspicions + 1)
        elif kind == "pass":
            step = R.after_verified(s, now)
            s, move = step.standing, step.move
            assert s.streak == before.streak + 1
            if move is Move.VEST:
                assert not reference and before.state is not TrustState.QUARANTINED
                assert before.state is TrustState.TRUSTED or s.streak >= R.VEST_AFTER_VERIFIED
        elif kind in ("fail", "mismatch"):
            recent = sum(1 for at in failures if at >= now - R.FAILURE_WINDOW_S)
            step = R.after_failed(s, now, recent)
            s, move = step.standing, step.move
            failures.append(now)
            assert s.streak == 0 and s.failed == before.failed + 1
            assert move is (Move.NONE if reference else Move.FORFEIT)
            assert s.check_rate() == (0.0 if reference else verify.NEW_RATE)  # checked as often as a new one
            assert (s.state is TrustState.QUARANTINED) == (recent + 1 >= R.QUARANTINE_AFTER
                                                           or before.state is TrustState.QUARANTINED)
        else:
            step = R.after_time(s, now)
            s, move = step.standing, step.move
            if move is Move.VEST:
                assert before.escrow_since is not None and now - before.escrow_since >= R.ESCROW_MAX_S
        if move is Move.VEST:
            vested, escrow = vested + escrow, 0
        elif move is Move.FORFEIT:
            forfeited, escrow = forfeited + escrow, 0
        assert escrow + vested + forfeited == earned
        assert 0 <= s.streak <= s.verified
        assert (s.state is TrustState.QUARANTINED) == (s.quarantined_until is not None)
        assert s.reference == reference and (s.escrow_since is None) == reference
        tiers = {TrustState.TRUSTED: 1, TrustState.NEW: 2, TrustState.QUARANTINED: 3}
        assert s.rank()[0] == (0 if reference else tiers[s.state])
    if reference:
        assert escrow == forfeited == 0
