from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.engine.protocol import EVENTS, OPS, ProtocolError, decode, encode


def test_round_trip() -> None:
    msg = {"op": "chat", "id": "7", "messages": [{"role": "user", "content": "héllo\n"}]}
    line = encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line, OPS, "op") == msg


@pytest.mark.parametrize("line", [b"", b"{", b"[]", b'{"op": "explode"}', b'"op"', b"\xff\xfe"])
def test_malformed_lines_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(line, OPS, "op")


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    for allowed, key in ((OPS, "op"), (EVENTS, "event")):
        try:
            msg = decode(data, allowed, key)
        except ProtocolError:
            continue
        assert msg[key] in allowed
