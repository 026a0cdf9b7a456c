"""The engine's events and their one codec: what the child writes, the parent reads back as the
same typed value; any other line is refused with a message that says what is wrong."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.engine import events
from hearth.engine.events import (
    KINDS,
    Done,
    Embedding,
    EngineEvent,
    Error,
    Fatal,
    Progress,
    Ready,
    Scored,
    Start,
    Token,
    Vectors,
    decode,
    encode,
)
from hearth.engine.protocol import ProtocolError

ids = st.text(max_size=12)
numbers = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=2**40)
any_events: st.SearchStrategy[EngineEvent] = st.one_of(
    st.builds(Progress, numbers),
    st.builds(Ready, st.integers(), counts, numbers),
    st.builds(Fatal, st.text()),
    st.builds(Start, ids, counts),
    st.builds(Token, ids, st.text(), st.lists(st.integers(min_value=-2**63, max_value=2**63)).map(tuple)),
    st.builds(Done, ids, st.sampled_from(["stop", "length", "cancelled"]), counts, counts, numbers, numbers,
              st.none() | numbers),
    st.builds(Vectors, ids, counts, st.lists(st.lists(numbers, max_size=8).map(tuple), max_size=4).map(tuple)),
    st.builds(Embedding, ids, counts),
    st.builds(Scored, ids, counts, st.lists(counts).map(tuple), st.lists(numbers).map(tuple), st.text()),
    st.builds(Error, st.none() | ids, st.text(max_size=30), st.text()),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | numbers | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = sorted({f.name for cls in KINDS for f in dataclasses.fields(cls)})


@given(any_events)
def test_encode_then_decode_gives_the_same_event(event: EngineEvent) -> None:
    line = encode(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one event, one line, whatever its text
    assert decode(line) == event
    assert decode(line.decode()) == event


def test_the_wire_format_is_the_json_object_it_always_was() -> None:
    assert json.loads(encode(Token("3", "hé\n", (1, 2)))) == {"event": "token", "id": "3", "text": "hé\n", "ids": [1, 2]}
    assert json.loads(encode(Error(None, "protocol", "x"))) == {"event": "error", "id": None, "code": "protocol",
                                                                "message": "x"}
    assert decode(b'{"event":"progress","fraction":1}') == Progress(1.0)  # an integral number is a float too
    with_lp = Token("3", "a", (1,), logprobs=(-0.5,), pieces=("a",), top_logprobs=((-0.5,),), top_pieces=(("a",),))
    assert decode(encode(with_lp)) == with_lp and "logprobs" in json.loads(encode(with_lp))


@given(st.sampled_from(sorted(cls.kind for cls in KINDS)),
       st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), json_values, max_size=8))
def test_any_object_decodes_to_a_valid_event_or_raises_protocol_error(kind: str, fields: dict[str, Any]) -> None:
    line = json.dumps({**fields, "event": kind}).encode()
    try:
        event = decode(line)
    except ProtocolError:
        return
    assert event.kind == kind and decode(encode(event)) == event


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass


@pytest.mark.parametrize(("cls", "field"), [(cls, f.name) for cls in KINDS for f in dataclasses.fields(cls)])
def test_every_field_of_the_wrong_type_is_named_in_the_error(cls: type[EngineEvent], field: str) -> None:
    good = json.loads(encode(_sample(cls)))
    with pytest.raises(ProtocolError, match=rf"{cls.kind}\.{field}"):
        decode(json.dumps(good | {field: {"a": 1}}))


@pytest.mark.parametrize(("line", "message"), [
    (b"", "not JSON"),
    (b"{", "not JSON"),
    (b"\xff\xfe\x00", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"id": "1"}', "unknown event None"),
    (b'{"event": "crashed", "returncode": 1}', "unknown event 'crashed'"),
    (b'{"event": 7}', "unknown event 7"),
    (b'{"event": "start", "id": "1"}', "lacks prompt_tokens"),
    (b'{"event": "start", "id": "1", "prompt_tokens": 3, "extra": 1}', "unknown fields extra"),
    (b'{"event": "start", "id": 1, "prompt_tokens": 3}', "start.id should be a string, not int"),
    (b'{"event": "start", "id": "1", "prompt_tokens": true}', "start.prompt_tokens should be an integer, not bool"),
    (b'{"event": "start", "id": "1", "prompt_tokens": 3.0}', "should be an integer, not float"),
    (b'{"event": "token", "id": "1", "text": "a", "ids": [1, "2"]}', r"token.ids\[\] should be an integer"),
    (b'{"event": "token", "id": "1", "text": "a", "ids": 1}', "token.ids should be a list"),
    (b'{"event": "progress", "fraction": NaN}', "NaN is not a number JSON allows"),
    (b'{"event": "progress", "fraction": Infinity}', "Infinity is not a number JSON allows"),
    (b'{"event": "progress", "fraction": 1e999}', "progress.fraction should be a finite number"),
    (b'{"event": "vectors", "id": "1", "index": 0, "data": [[0.5], [null]]}', r"vectors.data\[\]\[\] should be a finite"),
    (b'{"event": "error", "id": null, "code": "x"}', "lacks message"),
    (b'{"event": "done", "id": "1", "finish_reason": "bored", "prompt_tokens": 1, "completion_tokens": 1, '
     b'"ttft_ms": 1, "total_ms": 1, "decode_tokens_per_s": null}', "done.finish_reason should be one of"),
    (b'{"event": "start", "id": "1", "prompt_tokens": ' + b"9" * 5000 + b"}", "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
])
def test_malformed_lines_are_refused_with_a_clear_error(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(line)


def test_a_line_over_the_limit_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    line = encode(Vectors("1", 0, ((0.25,) * 64,) * 8))
    assert decode(line).kind == "vectors"
    monkeypatch.setattr(events, "MAX_LINE", len(line) - 1)
    with pytest.raises(ProtocolError, match="over the limit"):
        decode(line)


def test_the_limit_holds_at_its_real_size() -> None:
    with pytest.raises(ProtocolError, match=f"over the limit of {events.MAX_LINE}"):
        decode(b" " * (events.MAX_LINE + 1))


def test_numbers_json_cannot_carry_are_refused_when_sending() -> None:
    with pytest.raises(ValueError):
        encode(Vectors("1", 0, ((float("nan"),),)))


def test_protocol_errors_are_value_errors() -> None:
    assert issubclass(ProtocolError, ValueError)


def _sample(cls: type[EngineEvent]) -> EngineEvent:
    samples: list[EngineEvent] = [
        Progress(0.5), Ready(1, 2048, 12.5), Fatal("no"), Start("1", 3), Token("1", "a", (1,)),
        Done("1", "stop", 3, 1, 2.0, 3.0, None), Vectors("1", 0, ((0.5,),)), Embedding("1", 2),
        Scored("1", 3, (0, 1), (0.0, 0.25), "ab"), Error("1", "invalid_request", "no"),
    ]
    return next(s for s in samples if type(s) is cls)
