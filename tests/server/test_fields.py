"""The refusal of fields a request does not take (pure: hearth.server.fields, schemas, the 400's words)."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hearth.net.http_errors import validation_message
from hearth.server.fields import refusal, without_empty_extras
from hearth.server.schemas import ChatCompletionRequest, OllamaChatRequest, OllamaGenerateRequest

ASK = [{"role": "user", "content": "Hi"}]


def test_a_known_field_and_an_unknown_one_are_worded_apart() -> None:
    assert refusal("tools").startswith("'tools' is not supported by hearth yet; remove it")
    assert refusal("options.top_k").startswith("'options.top_k' is not supported by hearth yet")
    assert refusal("temprature").startswith("'temprature' is not a field of this request; remove it")


@given(st.dictionaries(st.text(max_size=6), st.none() | st.just([]) | st.integers() | st.text(max_size=3), max_size=6))
def test_only_undeclared_empty_fields_are_dropped(body: dict[str, object]) -> None:
    kept = without_empty_extras(body, {"model": None, "stop": None})
    assert {k: v for k, v in body.items() if k in ("model", "stop")}.items() <= kept.items()
    assert all(v is not None and v != [] for k, v in kept.items() if k not in ("model", "stop"))
    assert {k for k in body if k not in kept} == {k for k, v in body.items()
                                                  if k not in ("model", "stop") and (v is None or v == [])}


def _message(model: type, body: dict[str, object]) -> tuple[str, str | None]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return validation_message(RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]),
                              refusal)


def test_the_unknown_field_is_named_before_other_problems() -> None:
    # fields nobody in issue 14 adds: these stay refused when tools, FIM and options land
    message, param = _message(ChatCompletionRequest, {"messages": ASK, "temperature": "hot", "logit_bias": {"1": 2}})
    assert param == "logit_bias" and message.startswith("'logit_bias' is not supported by hearth yet")
    assert "1 more" in message
    message, param = _message(ChatCompletionRequest, {"messages": [{"role": "user", "content": "Hi", "audio": {"id": "a"}}]})
    assert param == "messages.0.audio"
    message, param = _message(OllamaGenerateRequest, {"model": "m", "prompt": "p", "options": {"mirostat": 1}})
    assert param == "options.mirostat" and "'options.mirostat'" in message


def test_nothing_asked_is_accepted_as_the_ollama_client_sends_it() -> None:
    body = OllamaChatRequest.model_validate({"model": "m", "messages": ASK, "tools": [], "format": None})
    assert body.model == "m"
    with pytest.raises(ValidationError, match="Extra inputs"):
        OllamaChatRequest.model_validate({"model": "m", "messages": ASK, "think": True, "images": []})


def test_stream_options_need_a_stream() -> None:
    message, param = _message(ChatCompletionRequest, {"messages": ASK, "stream_options": {"include_usage": True}})
    assert param == "stream_options" and "only allowed with stream: true" in message
    body = ChatCompletionRequest.model_validate({"messages": ASK, "stream": True,
                                                 "stream_options": {"include_usage": True}})
    assert body.stream_options is not None and body.stream_options.include_usage
    assert ChatCompletionRequest.model_validate({"messages": ASK, "stream_options": None}).stream_options is None


def test_a_tool_result_names_the_call_it_answers() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    history = [*ASK, {"role": "assistant", "tool_calls": [call]}, {"role": "tool", "content": "18 C"}]
    message, param = _message(ChatCompletionRequest, {"messages": history})
    assert param == "messages.2.tool_call_id" and "tool_call_id of the call it answers" in message
    history[2] = {**history[2], "tool_call_id": "c1"}
    assert ChatCompletionRequest.model_validate({"messages": history}).messages[2].tool_call_id == "c1"
