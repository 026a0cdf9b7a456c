"""The pure Responses <-> chat translation, checked against the official openai package's types:
the chat side against its chat completion params (TypedDicts), the Responses side against its
Response and stream event models and the stream helper's own accumulator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.chat import completion_create_params
from openai.types.responses import Response, ResponseStreamEvent, response_create_params
from pydantic import TypeAdapter, ValidationError

from hearth.errors import InvalidRequest
from hearth.server.responses_convert import (
    EventTranslator,
    chat_body,
    fit_to_chat,
    response_object,
    shell,
)
from hearth.server.responses_schema import UNSUPPORTED, ResponsesRequest

CHAT_PARAMS = TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming)
EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather now.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
ident = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


def request(**fields: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m"} | fields)


# -- request ------------------------------------------------------------------------------
OPENAI_FIELDS = sorted(set(response_create_params.ResponseCreateParamsBase.__annotations__) | {"stream"})


def test_every_field_of_openais_request_is_declared() -> None:
    """Each field the official client can send is taken or refused with its own reason, never
    met by the generic 'not a field' (a field OpenAI adds later would fail here first)."""
    assert set(OPENAI_FIELDS) <= set(ResponsesRequest.model_fields)


@pytest.mark.parametrize("field", sorted(UNSUPPORTED))
def test_what_hearth_cannot_honour_is_refused_by_name(field: str) -> None:
    with pytest.raises(ValidationError) as bad:
        ResponsesRequest.model_validate({"input": "hi", field: {"something": "asked"}})
    [error] = bad.value.errors()
    assert error["loc"] == (field,) and error["type"] == "value_error"
    neutral, _ = UNSUPPORTED[field]
    for value in (None, *neutral):  # what asks for nothing is taken
        ResponsesRequest.model_validate({"input": "hi", field: value})


def test_tools_and_tool_choice_take_chats_nested_shape() -> None:
    body = chat_body(request(input="hi", tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"},
                             max_output_tokens=7, temperature=0.5, top_p=0.9, instructions="Be brief."))
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather now.", "parameters": WEATHER["parameters"], "strict": True}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (7, 0.5, 0.9)
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    CHAT_PARAMS.validate_python(body | {"model": "m"})
    for choice in ("none", "auto", "required"):
        assert chat_body(request(input="hi", tools=[WEATHER], tool_choice=choice))["tool_choice"] == choice


def test_logprobs_are_asked_by_include_or_top_logprobs() -> None:
    assert "logprobs" not in chat_body(request(input="hi"))
    asked = chat_body(request(input="hi", include=["message.output_text.logprobs"]))
    assert asked["logprobs"] is True and "top_logprobs" not in asked
    tops = chat_body(request(input="hi", top_logprobs=3))
    assert (tops["logprobs"], tops["top_logprobs"]) == (True, 3)
    CHAT_PARAMS.validate_python(tops | {"model": "m"})
    with pytest.raises(InvalidRequest) as lacking:
        fit_to_chat(tops, {"messages", "logprobs"}, {"role", "content"})
    assert lacking.value.param == "top_logprobs"
    with pytest.raises(InvalidRequest) as lacking:
        fit_to_chat(asked, {"messages"}, {"role", "content"})
    assert lacking.value.param == "include"


def test_a_named_tool_choice_must_be_among_the_tools() -> None:
    with pytest.raises(InvalidRequest) as bad:
        chat_body(request(input="hi", tools=[WEATHER], tool_choice={"type": "function", "name": "nope"}))
    assert bad.value.param == "tool_choice" and "'nope'" in bad.value.message


def test_streaming_asks_for_usage() -> None:
    assert chat_body(request(input="hi", stream=True))["stream_options"] == {"include_usage": True}
    assert "stream_options" not in chat_body(request(input="hi"))


message = st.builds(lambda role, t: {"role": role, "content": t},
                    st.sampled_from(["user", "assistant", "system", "developer"]), text)
call = st.builds(lambda cid, name, args: {"type": "function_call", "call_id": cid, "name": name, "arguments": args},
                 ident, ident, text)
result = st.builds(lambda cid, out: {"type": "function_call_output", "call_id": cid, "output": out}, ident, text)


@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.one_of(message, call, result), min_size=1, max_size=8), instructions=st.none() | text)
def test_items_become_chat_messages_in_order(items: list[dict[str, Any]], instructions: str | None) -> None:
    body = chat_body(request(input=items, instructions=instructions))
    messages = body["messages"]
    if instructions:
        assert messages[0] == {"role": "system", "content": instructions}
        messages = messages[1:]
    # every item is in the conversation once, in order: texts, calls and results
    flat: list[tuple[str, ...]] = []
    for m in messages:
        if m["role"] == "tool":
            flat.append(("out", m["tool_call_id"], m["content"]))
            continue
        if m.get("content") is not None:  # None: an assistant message made for calls alone
            flat.append((m["role"], m["content"]))
        for c in m.get("tool_calls", []):
            assert m["role"] == "assistant" and c["type"] == "function"
            flat.append(("call", c["id"], c["function"]["name"], c["function"]["arguments"]))
    expected: list[tuple[str, ...]] = []
    for it in items:
        if it.get("type") == "function_call":
            expected.append(("call", it["call_id"], it["name"], it["arguments"]))
        elif it.get("type") == "function_call_output":
            expected.append(("out", it["call_id"], it["output"]))
        else:
            expected.append((it["role"], it["content"]))
    assert flat == expected
    CHAT_PARAMS.validate_python(body | {"model": "m"})


def test_a_result_names_its_function_when_the_call_is_in_the_input() -> None:
    body = chat_body(request(input=[
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "noon"}]},
        {"type": "function_call_output", "call_id": "c9", "output": "?"}]))
    user, assistant, r2, r9 = body["messages"]
    assert assistant["content"] is None and [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert r2 == {"role": "tool", "tool_call_id": "c2", "content": "noon", "name": "get_time"}
    assert "name" not in r9


def test_what_the_chat_path_lacks_is_refused_by_responses_name() -> None:
    body = chat_body(request(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}],
                             tools=[WEATHER]))
    with pytest.raises(InvalidRequest) as no_tools:
        fit_to_chat(body, {"messages", "model"}, {"role", "content", "tool_calls"})
    assert no_tools.value.param == "tools"
    with pytest.raises(InvalidRequest) as no_calls:
        fit_to_chat(body, {"messages", "tools"}, {"role", "content"})
    assert no_calls.value.param == "input"
    assert fit_to_chat(body, {"messages", "tools"}, {"role", "content", "tool_calls"}) == body
    one = chat_body(request(input="hi", tools=[WEATHER], parallel_tool_calls=False))
    assert one["parallel_tool_calls"] is False
    assert "parallel_tool_calls" not in fit_to_chat(one, {"messages", "tools"}, {"role", "content"})
    assert fit_to_chat(one, {"messages", "tools", "parallel_tool_calls"}, {"role", "content"}) == one


# -- result -------------------------------------------------------------------------------
def start(**fields: Any) -> dict[str, Any]:
    return shell(request(input="hi", **fields), "resp_0123456789abcdef01234567", 1_700_000_000, "m")


def logprob(piece: str) -> dict[str, Any]:
    raw = list(piece.encode())
    return {"token": piece, "logprob": -0.5, "bytes": raw, "top_logprobs": [
        {"token": piece, "logprob": -0.5, "bytes": raw}, {"token": "x", "logprob": -2.0, "bytes": [120]}]}


def completion(content: str | None, calls: list[tuple[str, str]] = (), finish: str = "stop",  # type: ignore[assignment]
               logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    tool_calls = [{"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                  for i, (n, a) in enumerate(calls)]
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content,
                                                 **({"tool_calls": tool_calls} if calls else {})},
                         "finish_reason": finish, "logprobs": {"content": logprobs} if logprobs else None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def test_a_completion_becomes_a_response_the_client_parses() -> None:
    r = Response.model_validate(response_object(start(), completion("Paris.")))
    assert r.status == "completed" and r.output_text == "Paris." and r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (5, 3, 8)
    with_lp = Response.model_validate(response_object(start(top_logprobs=2), completion(
        "Paris.", logprobs=[logprob("Paris"), logprob(".")])))
    part = with_lp.output[0].content[0]  # type: ignore[union-attr]
    assert [lp.token for lp in part.logprobs] == ["Paris", "."] and len(part.logprobs[0].top_logprobs) == 2  # type: ignore[union-attr]
    assert with_lp.top_logprobs == 2
    cut = Response.model_validate(response_object(start(), completion("Par", finish="length")))
    assert cut.status == "incomplete" and cut.incomplete_details and cut.incomplete_details.reason == "max_output_tokens"


def test_tool_calls_become_function_call_items() -> None:
    calls = [("get_weather", '{"city": "Paris"}'), ("get_weather", '{"city": "Rome"}')]
    r = Response.model_validate(response_object(start(tools=[WEATHER]), completion(None, calls, "tool_calls")))
    assert [(o.type, o.name, o.arguments, o.call_id) for o in r.output] == [  # type: ignore[union-attr]
        ("function_call", "get_weather", '{"city": "Paris"}', "call_0"),
        ("function_call", "get_weather", '{"city": "Rome"}', "call_1")]
    one = response_object(start(tools=[WEATHER], parallel_tool_calls=False), completion(None, calls, "tool_calls"))
    assert [o["arguments"] for o in one["output"]] == ['{"city": "Paris"}']
    assert Response.model_validate(one).tools[0].name == "get_weather"  # type: ignore[union-attr]


def chunks_for(pieces: list[str], calls: list[tuple[str, list[str]]], finish: str,
               logprobs: bool = False) -> list[dict[str, Any]]:
    """Chat completion chunks as the chat route streams them (tool-call deltas in OpenAI's shape)."""
    out: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                               "finish_reason": None}]}]
    out += [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}
                         | ({"logprobs": {"content": [logprob(p)]}} if logprobs else {})]} for p in pieces]
    for i, (name, args) in enumerate(calls):
        out.append({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                                                       "function": {"name": name, "arguments": ""}}]},
                                 "finish_reason": None}]})
        out += [{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": a}}]},
                              "finish_reason": None}]} for a in args]
    out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    out.append({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13}})
    return out


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(text, max_size=6), calls=st.lists(st.tuples(ident, st.lists(text, max_size=4)), max_size=3),
       finish=st.sampled_from(["stop", "length", "tool_calls"]), logprobs=st.booleans())
def test_streamed_chunks_become_the_events_the_client_accumulates(
        pieces: list[str], calls: list[tuple[str, list[str]]], finish: str, logprobs: bool) -> None:
    # not strict: the stream helper parses a strict tool's arguments as JSON (the text here is random)
    tools = [WEATHER | {"name": n, "strict": False} for n in dict.fromkeys(n for n, _ in calls)]
    translator = EventTranslator(start(tools=tools) if tools else start())
    raw = translator.opening()
    for chunk in chunks_for(pieces, calls, finish, logprobs):
        raw += translator.feed(chunk)
    raw += translator.close()
    events = [EVENT.validate_python(e) for e in raw]  # each one is a valid Responses event
    assert [e.sequence_number for e in events] == list(range(len(events)))
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=tools, text_format=omit)  # type: ignore[arg-type]
    for e in events:
        state.handle_event(e)  # the official stream helper accepts the sequence
    final = events[-1]
    assert final.type == ("response.incomplete" if finish == "length" else "response.completed")
    response = final.response  # type: ignore[union-attr]
    assert response.output_text == "".join(pieces)
    assert [(o.name, o.arguments) for o in response.output if o.type == "function_call"] == [  # type: ignore[union-attr]
        (n, "".join(a)) for n, a in calls]
    assert response.usage is not None and response.usage.output_tokens == 9
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "".join(pieces)
    texts = [o.content[0] for o in response.output if o.type == "message"]  # type: ignore[union-attr]
    assert [lp.token for t in texts for lp in t.logprobs or []] == (pieces if logprobs else [])  # type: ignore[union-attr]
    if finish != "length":
        assert state._completed_response is not None and state._completed_response.output_text == "".join(pieces)


def test_an_error_in_band_fails_the_response() -> None:
    translator = EventTranslator(start())
    raw = translator.opening() + translator.feed(chunks_for(["Par"], [], "stop")[1])
    raw += translator.fail({"message": "engine process exited", "type": "server_error", "code": "engine_crashed"})
    events = [EVENT.validate_python(e) for e in raw]
    assert events[-2].type == "error" and events[-2].code == "engine_crashed"  # type: ignore[union-attr]
    assert events[-1].type == "response.failed" and events[-1].response.status == "failed"  # type: ignore[union-attr]
    assert json.dumps(raw)  # plain JSON all through
