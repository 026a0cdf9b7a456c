"""The pairing exchange, driven without sockets (it is a sans-IO state machine)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from hearth.errors import InvalidRequest
from hearth.identity import NodeIdentity
from hearth.net.b64 import encode as b64
from hearth.pairing.codes import make_code, parse_code
from hearth.pairing.exchange import NotAnAttempt, PairingFailed, PairingGuest, PairingHost, PairingInfo
from hearth.tunnel.wireguard import tunnel_address


def info(tmp: Path, name: str) -> PairingInfo:
    ident = NodeIdentity.load_or_create(tmp / name)
    return PairingInfo(name, b64(ident.public_key), b64(os.urandom(32)), tunnel_address(ident.public_key),
                       ("10.77.0.2:51820",))


@pytest.fixture
def pair(tmp_path: Path) -> tuple[PairingInfo, PairingInfo]:
    return info(tmp_path, "den"), info(tmp_path, "attic")


def test_a_peer_cannot_claim_another_tunnel_address_or_a_bad_endpoint(tmp_path: Path) -> None:
    good = asdict(info(tmp_path, "den"))
    assert PairingInfo.parse(good).name == "den"
    for change in ({"tunnel_address": "10.99.0.1"}, {"tunnel_address": "10.0.0.0/8"},
                   {"endpoints": ["den.local:51820"]}, {"endpoints": ["10.77.0.2:²"]}, {"endpoints": ["10.77.0.2"]},
                   {"agent_port": 0}, {"agent_port": "11436"}):
        with pytest.raises(PairingFailed):
            PairingInfo.parse(good | change)


def run(host: PairingHost, guest: PairingGuest, now: float = 0.0) -> None:
    reply = host.receive(guest.start(), now)
    answer = guest.receive(reply)
    assert answer is not None
    assert guest.receive(host.receive(answer, now)) is None


def test_the_right_code_pairs_both_sides(pair: tuple[PairingInfo, PairingInfo]) -> None:
    code = make_code(7)
    n, norm = parse_code(code.upper())
    host, guest = PairingHost(norm, n, pair[0], now=0.0), PairingGuest(code, 7, pair[1])
    run(host, guest)
    assert host.state == guest.state == "done"
    assert host.peer == pair[1] and guest.peer == pair[0]
    assert host.verifier == guest.verifier and len(host.verifier.split("-")) == 3  # type: ignore[union-attr]
    assert host.secret == guest.secret and len(host.secret) == 32


def test_node_ids_come_from_the_identity_keys(pair: tuple[PairingInfo, PairingInfo], tmp_path: Path) -> None:
    code = make_code(3)
    host, guest = PairingHost(code, 3, pair[0], now=0.0), PairingGuest(code, 3, pair[1])
    run(host, guest)
    assert guest.peer is not None
    assert guest.peer.node_id == NodeIdentity.load_or_create(tmp_path / "den").node_id


def test_a_wrong_code_fails_at_the_first_bad_message_and_burns_the_code(pair: tuple[PairingInfo, PairingInfo]) -> None:
    code = make_code(7)
    host = PairingHost(code, 7, pair[0], now=0.0)
    guest = PairingGuest("7-wrong-guess", 7, pair[1])
    reply = host.receive(guest.start(), 1.0)
    with pytest.raises(PairingFailed, match="Wrong code"):
        guest.receive(reply)  # the host's confirmation is the first message that can be wrong
    assert host.peer is None and guest.peer is None
    # the real guest now finds the code burned
    with pytest.raises(PairingFailed, match="already used"):
        host.receive(PairingGuest(code, 7, pair[1]).start(), 2.0)


def test_a_forged_confirmation_burns_the_code(pair: tuple[PairingInfo, PairingInfo]) -> None:
    code = make_code(7)
    host = PairingHost(code, 7, pair[0], now=0.0)
    guest = PairingGuest("7-other-words", 7, pair[1])
    host.receive(guest.start(), 1.0)
    with pytest.raises(PairingFailed, match="Wrong code"):
        host.receive({"t": "confirm", "confirm": b64(os.urandom(32)), "box": b64(b"x")}, 1.0)
    assert host.state == "burned"


def test_an_expired_code_fails(pair: tuple[PairingInfo, PairingInfo]) -> None:
    code = make_code(7)
    host = PairingHost(code, 7, pair[0], now=0.0, ttl=300)
    with pytest.raises(PairingFailed, match="expired"):
        host.receive(PairingGuest(code, 7, pair[1]).start(), 301.0)


def test_a_replayed_transcript_fails(pair: tuple[PairingInfo, PairingInfo]) -> None:
    code = make_code(5)
    host1, guest1 = PairingHost(code, 5, pair[0], now=0.0), PairingGuest(code, 5, pair[1])
    first = guest1.start()
    answer = guest1.receive(host1.receive(first, 0.0))
    host1.receive(answer, 0.0)
    # An eavesdropper replays the guest's two messages to a new session with the same code.
    host2 = PairingHost(code, 5, pair[0], now=10.0)
    host2.receive(first, 10.0)
    with pytest.raises(PairingFailed, match="Wrong code"):
        host2.receive(answer, 10.0)
    assert host2.peer is None


@pytest.mark.parametrize("text", ["", "7", "7-crossbow", "0-honey-acre", "7-honey-notaword", "12345-honey-acre",
                                  "7-honey-acre-extra", "-1-honey-acre"])
def test_malformed_codes_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="7-crossbow-anvil"):
        parse_code(text)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                       lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                       max_leaves=10)
MESSAGES = st.one_of(JSONISH, st.fixed_dictionaries({"t": st.sampled_from(["pake", "confirm", "box", "x"]),
                                                     "nameplate": st.integers(0, 9), "msg": st.text(max_size=60),
                                                     "confirm": st.text(max_size=60), "box": st.text(max_size=60)}))


@settings(max_examples=200)
@given(st.lists(MESSAGES, min_size=1, max_size=4))
def test_any_messages_fail_only_with_pairing_failed(msgs: list[Any]) -> None:
    me = PairingInfo("den", b64(bytes(32)), b64(bytes(32)), "10.99.0.1", ())
    host = PairingHost("7-honey-acre", 7, me, now=0.0)
    guest = PairingGuest("7-honey-acre", 7, me)
    guest.start()
    for m in msgs:
        for side in (lambda x: host.receive(x, 1.0), guest.receive):
            try:
                side(m)
            except PairingFailed:
                pass


@given(st.dictionaries(st.sampled_from(["name", "identity_key", "wireguard_key", "tunnel_address", "endpoints", "x"]),
                       JSONISH, max_size=6))
def test_peer_details_parse_or_fail_cleanly(data: dict[str, Any]) -> None:
    try:
        PairingInfo.parse(data)
    except PairingFailed:
        pass


@settings(max_examples=200)
@given(st.binary(max_size=80), st.binary(max_size=80))
def test_garbage_key_exchange_bytes_fail_cleanly(pake: bytes, confirm: bytes) -> None:
    me = PairingInfo("den", b64(bytes(32)), b64(bytes(32)), "10.99.0.1", ())
    host = PairingHost("7-honey-acre", 7, me, now=0.0)
    try:
        host.receive({"t": "pake", "nameplate": 7, "msg": b64(pake)}, 1.0)
    except PairingFailed:
        return
    with pytest.raises(PairingFailed):
        host.receive({"t": "confirm", "confirm": b64(confirm), "box": b64(pake)}, 1.0)
    guest = PairingGuest("7-honey-acre", 7, me)
    guest.start()
    try:
        guest.receive({"t": "pake", "msg": b64(pake), "confirm": b64(confirm)})
    except PairingFailed:
        pass


@settings(max_examples=300)
@given(st.binary(min_size=32, max_size=32), st.sampled_from([b"A", b"B", b"S", b"\x00"]))
def test_random_points_fail_cleanly(point: bytes, side: bytes) -> None:
    me = PairingInfo("den", b64(bytes(32)), b64(bytes(32)), "10.99.0.1", ())
    for receive in (lambda m: PairingHost("7-honey-acre", 7, me, now=0.0).receive(m, 1.0),):
        try:
            receive({"t": "pake", "nameplate": 7, "msg": b64(side + point)})
        except PairingFailed:
            pass
    guest = PairingGuest("7-honey-acre", 7, me)
    guest.start()
    try:
        guest.receive({"t": "pake", "msg": b64(side + point), "confirm": b64(point)})
    except PairingFailed:
        pass


def fixed_info(name: str, seed: int) -> PairingInfo:
    key = bytes(SigningKey(bytes([seed]) * 32).verify_key)
    return PairingInfo(name, b64(key), b64(bytes(32)), tunnel_address(key), ("10.77.0.2:51820",))


NOT_POINTS = st.sampled_from(["QgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC", "QgEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB",
                              "QgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "QQ", ""]).map(
    lambda m: {"t": "pake", "nameplate": 7, "msg": m})


@settings(max_examples=50, deadline=None)  # each example ends in a real pairing (pure-Python SPAKE2)
@given(st.lists(st.one_of(MESSAGES, NOT_POINTS), max_size=5))
def test_anything_short_of_an_attempt_leaves_the_code_usable(msgs: list[Any]) -> None:
    """Only an answered key-exchange message spends a code: before it, whatever arrives is
    NotAnAttempt and the real guest still pairs."""
    pair = fixed_info("den", 1), fixed_info("attic", 2)
    host = PairingHost("7-honey-acre", 7, pair[0], now=0.0)
    for m in msgs:
        with pytest.raises(NotAnAttempt):
            host.receive(m, 1.0)
        assert host.state == "waiting"
    run(host, PairingGuest("7-honey-acre", 7, pair[1]), now=1.0)
    assert host.state == "done"


def test_the_host_name_travels_and_is_checked(tmp_path: Path) -> None:
    good = asdict(info(tmp_path, "den")) | {"hostname": "box-17.lan"}
    assert PairingInfo.parse(good).hostname == "box-17.lan"
    assert PairingInfo.parse({k: v for k, v in good.items() if k != "hostname"}).hostname == ""  # older peers
    with pytest.raises(PairingFailed, match="host name"):
        PairingInfo.parse(good | {"hostname": "bad\nname"})
