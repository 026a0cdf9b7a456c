"""The request side of the engine pipe: one JSON object per line with an 'op' (events are in
test_events.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.engine.protocol import OPS, ProtocolError, decode_request, encode_request


def test_round_trip() -> None:
    msg = {"op": "chat", "id": "7", "messages": [{"role": "user", "content": "héllo\n"}]}
    line = encode_request(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line) == msg


@pytest.mark.parametrize("line", [b"", b"{", b"[]", b'{"op": "explode"}', b'"op"', b"\xff\xfe",
                                  b'{"event": "token"}', b"1" * 5000])
def test_malformed_lines_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_request(line)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        msg = decode_request(data)
    except ProtocolError:
        return
    assert msg["op"] in OPS
