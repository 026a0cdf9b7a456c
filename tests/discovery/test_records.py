from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.discovery.records import (
    DeviceInfo,
    PairingRecord,
    PeerRecord,
    RecordError,
    parse_pairing_record,
    parse_record,
)
from hearth.ggml.hello import RpcVersion

GOOD = PeerRecord("abcdefghijklmnop", "den pc", "0.1.0", RpcVersion(7, 0, 0), 11436,
                  (DeviceInfo("CPU", 8 * 10**9, 16 * 10**9),), ("10.77.0.2",))


def props(record: PeerRecord, **changes: str | None) -> dict[bytes, bytes | None]:
    p: dict[str, str | None] = {**record.to_properties(), **changes}
    return {k.encode(): (v.encode() if v is not None else None) for k, v in p.items()}


def test_round_trip() -> None:
    assert parse_record(props(GOOD), ["10.77.0.2"]) == GOOD
    assert GOOD.free_bytes == 8 * 10**9


@pytest.mark.parametrize("change, says", [
    ({"id": "ABCDEFGHIJKLMNOP"}, "base32"), ({"id": None}, "lacks"), ({"name": ""}, "name"),
    ({"name": "x" * 64}, "name"), ({"name": "a\nb"}, "name"), ({"v": "latest"}, "version"),
    ({"rpc": "7"}, "RPC"), ({"port": "0"}, "port"), ({"port": "70000"}, "port"), ({"port": "-1"}, "port"),
    ({"port": "²"}, "port"), ({"rpc": "7.٣.0"}, "RPC"),
    ({"dev": ""}, "devices"), ({"dev": "CPU,10,5"}, "more free"), ({"dev": "CPU,1"}, "NAME,FREE,TOTAL"),
    ({"dev": ";".join(["CPU,1,2"] * 9)}, "devices"),
    ({"full": "yes"}, "full"), ({"full": "2"}, "full"), ({"full": ""}, "full"), ({"full": None}, "lacks"),
])
def test_malformed_records_are_refused(change: dict[str, str | None], says: str) -> None:
    with pytest.raises(RecordError, match=says):
        parse_record(props(GOOD, **change), ["10.77.0.2"])


@pytest.mark.parametrize("addresses", [[], ["0.0.0.0"], ["224.0.0.251"], ["not-an-ip"]])
def test_bad_addresses_are_refused(addresses: list[str]) -> None:
    with pytest.raises(RecordError):
        parse_record(props(GOOD), addresses)


def test_non_utf8_is_refused() -> None:
    p = props(GOOD)
    p[b"name"] = b"\xff\xfe"
    with pytest.raises(RecordError, match="UTF-8"):
        parse_record(p, ["10.77.0.2"])


def test_full_flag_round_trips_and_older_records_are_not_full() -> None:
    full = PeerRecord(**{**vars(GOOD), "full": True})
    assert parse_record(props(full), ["10.77.0.2"]) == full and full.to_properties()["full"] == "1"
    older = props(GOOD)
    del older[b"full"]  # a node from before the flag
    assert parse_record(older, ["10.77.0.2"]).full is False


@given(st.none() | st.sampled_from([b"0", b"1", b"01", b"1 ", "１".encode()]) | st.binary(max_size=8))
def test_any_full_value_is_0_or_1_or_refused(value: bytes | None) -> None:
    p = props(GOOD)
    p[b"full"] = value
    try:
        record = parse_record(p, ["10.77.0.2"])
    except RecordError:
        assert value not in (b"0", b"1")
        return
    assert value in (b"0", b"1") and record.full == (value == b"1")


@given(st.dictionaries(st.sampled_from([b"id", b"name", b"v", b"rpc", b"port", b"dev", b"full", b"x"]),
                       st.one_of(st.none(), st.binary(max_size=80)), max_size=7),
       st.lists(st.text(max_size=20), max_size=3))
def test_any_record_parses_or_raises_record_error(p: dict[bytes, bytes | None], addresses: list[str]) -> None:
    try:
        rec = parse_record(p, addresses)
    except RecordError:
        return
    assert len(rec.node_id) == 16 and rec.devices and rec.addresses


@given(st.builds(lambda free, extra, name, full: PeerRecord(
    "abcdefghijklmnop", name, "0.1.0", RpcVersion(7, 0, 0), 1234, (DeviceInfo("CPU", free, free + extra),), ("127.0.0.1",),
    full), st.integers(0, 2**50), st.integers(0, 2**50), st.from_regex(r"[A-Za-z0-9 ._-]{1,63}", fullmatch=True),
    st.booleans()))
def test_every_record_we_write_parses_back(record: PeerRecord) -> None:
    assert parse_record(props(record), list(record.addresses)) == record


def test_pairing_record_round_trip_and_refusals() -> None:
    record = PairingRecord(42, "den", "10.77.0.2", 11437)
    wire = {k.encode(): v.encode() for k, v in record.to_properties().items()}
    assert parse_pairing_record(wire, ["10.77.0.2"], 11437) == record
    for bad, addresses, port in (({b"np": b"10000", b"name": b"den"}, ["10.77.0.2"], 1),
                                 ({b"np": b"0", b"name": b"den"}, ["10.77.0.2"], 1),
                                 ({b"np": "²".encode(), b"name": b"den"}, ["10.77.0.2"], 1),
                                 ({b"np": b"x", b"name": b"den"}, ["10.77.0.2"], 1),
                                 ({b"np": b"4", b"name": b"bad\nname"}, ["10.77.0.2"], 1),
                                 ({b"np": b"4", b"name": b"den"}, ["0.0.0.0", "nonsense"], 1),
                                 ({b"np": b"4", b"name": b"den"}, ["10.77.0.2"], 0)):
        with pytest.raises(RecordError):
            parse_pairing_record(bad, addresses, port)


@given(st.dictionaries(st.sampled_from([b"np", b"name", b"x"]), st.none() | st.binary(max_size=70), max_size=3),
       st.lists(st.text(max_size=20), max_size=3), st.integers(-5, 70000))
def test_any_pairing_record_parses_or_raises_record_error(p: dict[bytes, bytes | None], addresses: list[str],
                                                          port: int) -> None:
    try:
        record = parse_pairing_record(p, addresses, port)
    except RecordError:
        return
    assert 0 < record.nameplate <= 9999 and 0 < record.port < 65536
