"""The protocol's codec (hearth.public_swarm.protocol.messages): every message round-trips, and every
malformed frame is refused with a MessageInvalid that says what is wrong, never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.public_swarm.protocol import messages as m
from tests.public_swarm.protocol_kit import DIGEST, MESSAGES, MODEL, any_message, offer


def test_every_message_type_has_a_strategy() -> None:
    names = {c.model_fields["type"].default for c in (*m.WORKER_MESSAGES, *m.COORDINATOR_MESSAGES)}
    assert names == set(MESSAGES)


@pytest.mark.parametrize("kind", sorted(MESSAGES))
@given(data=st.data())
@settings(max_examples=40)
def test_round_trip(kind: str, data: st.DataObject) -> None:
    msg = data.draw(MESSAGES[kind])
    text = m.encode(msg)
    assert len(text) <= m.MAX_FRAME_CHARS
    back = m.decode(text)
    assert back == msg and type(back) is type(msg)
    assert m.decode(text.encode("utf-8")) == msg
    assert m.encode(back) == text


def _frame(**fields: object) -> str:
    return json.dumps(fields)


HELLO = json.loads(m.encode(m.Hello(v=1, node_id="a" * 16, public_key="A" * 43, signature="B" * 86,
                                    models=[MODEL], max_jobs=2)))
TOKENS = {"type": "tokens", "job_id": "j", "seq": 0, "text": "hi", "token_ids": [1, 2]}


@pytest.mark.parametrize(("frame", "says"), [
    ("not json", "not JSON"),
    ("", "not JSON"),
    ("[1, 2]", "not list"),
    ("null", "not NoneType"),
    (_frame(type="nope"), "has unknown type 'nope'"),
    (_frame(job_id="j"), "has no 'type'"),
    (_frame(type="ping", extra=1), "Extra inputs"),
    (_frame(type="accept"), "job_id"),
    (_frame(type="accept", job_id=7), "job_id"),
    (_frame(type="accept", job_id="has space"), "job_id"),
    (_frame(type="accept", job_id="x" * 65), "job_id"),
    (_frame(**{**TOKENS, "seq": "0"}), "seq"),
    (_frame(**{**TOKENS, "seq": 1.0}), "seq"),
    (_frame(**{**TOKENS, "seq": True}), "seq"),
    (_frame(**{**TOKENS, "seq": -1}), "seq"),
    (_frame(**{**TOKENS, "token_ids": []}), "token_ids"),
    (_frame(**{**TOKENS, "token_ids": [2**31]}), "token_ids"),
    (_frame(**{**TOKENS, "token_ids": list(range(m.MAX_IDS_PER_FRAME + 1))}), "token_ids"),
    (_frame(**{**TOKENS, "text": "x" * (2 * m.MAX_CHARS_PER_TOKEN + 1)}), "characters per token"),
    ('{"type":"welcome","node_id":"aaaaaaaaaaaaaaaa","heartbeat_s":NaN}', "NaN"),
    ('{"type":"welcome","node_id":"aaaaaaaaaaaaaaaa","heartbeat_s":Infinity}', "Infinity"),
    ('{"type":"welcome","node_id":"aaaaaaaaaaaaaaaa","heartbeat_s":1e999}', "finite"),
    ('{"type":"ping","type":"ping"}', "twice"),
    ('{"type":"accept","job_id":"\\ud800"}', "surrogate"),
    ("[" * 100_000, "not JSON"),
    (_frame(type="tokens", job_id="j", seq=0, text="x", token_ids=[1], pad="x" * m.MAX_FRAME_CHARS),
     "at most"),
    (_frame(**{**HELLO, "models": [HELLO["models"][0]] * 2}), "twice"),
    (_frame(**{**HELLO, "models": []}), "models"),
    (_frame(**{**HELLO, "max_jobs": m.MAX_JOBS + 1}), "max_jobs"),
    (_frame(**{**HELLO, "models": [{**HELLO["models"][0], "decode_tps": 0}]}), "decode_tps"),
    (_frame(type="offer", job_id="j", model_digest=DIGEST.upper(), request={"prompt": "x", "max_tokens": 1}),
     "model_digest"),
    (_frame(type="offer", job_id="j", model_digest=DIGEST, request={"max_tokens": 1}), "either chat"),
    (_frame(type="offer", job_id="j", model_digest=DIGEST,
            request={"prompt": "x", "messages": [{"role": "user", "content": "y"}], "max_tokens": 1}),
     "either chat"),
    (_frame(type="offer", job_id="j", model_digest=DIGEST,
            request={"prompt": "x", "max_tokens": 2, "resume": {"text": "ab", "token_ids": [1, 2]}}),
     "nothing is left"),
    (_frame(type="finished", job_id="j", finish_reason="tired", prompt_tokens=1, completion_tokens=1,
            receipt="{}"), "finish_reason"),
])
def test_malformed_frames_are_refused_clearly(frame: str, says: str) -> None:
    with pytest.raises(m.MessageInvalid) as caught:
        m.decode(frame)
    assert says in caught.value.message
    assert caught.value.code == "invalid_message" and caught.value.http_status == 400


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(m.MessageInvalid, match="UTF-8"):
        m.decode(b'{"type":"ping"}\xff')


def test_prompt_bytes_cover_the_resume_data_and_survive_the_wire() -> None:
    plain, resumed = offer(), offer(resume=m.Resume(text="Ray", token_ids=[5]))
    assert m.prompt_bytes(plain.request) != m.prompt_bytes(resumed.request)
    back = m.decode(m.encode(resumed))
    assert isinstance(back, m.Offer) and m.prompt_bytes(back.request) == m.prompt_bytes(resumed.request)


@given(st.text(max_size=300) | st.binary(max_size=300))
@settings(max_examples=300)
def test_arbitrary_text_is_a_message_or_message_invalid(frame: str | bytes) -> None:
    try:
        m.decode(frame)
    except m.MessageInvalid:
        pass


@given(any_message, st.data())
@settings(max_examples=200)
def test_one_field_changed_to_junk_is_refused_or_still_valid(msg: m.Message, data: st.DataObject) -> None:
    obj = json.loads(m.encode(msg))
    key = data.draw(st.sampled_from(sorted(obj)))
    obj[key] = data.draw(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
                         | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    try:
        back = m.decode(json.dumps(obj))
    except m.MessageInvalid:
        return
    assert m.decode(m.encode(back)) == back
