"""Structured output and tool calls through the official clients (openai, ollama, langchain-openai)
against a real `hearth serve` with the real smollm2 engine.

smollm2's template knows nothing of tools, so they reach it as text in the system message
(hearth.engine.tool_prompt); "required" and named calls are shaped by grammar whatever the model
would have said, and "auto" is checked with a history that shows the model how a call looks.
Each grammar-constrained reply is a few seconds here (the grammar checks the whole vocabulary)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.conftest import Server

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": CITY}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now"}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# A call, its result and an answer, then another question: the model answers with a call in kind.
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    {"role": "assistant", "content": "It is 18 C in Paris."},
    {"role": "user", "content": "Weather in Oslo?"},
]
FILL = 'Fill in this JSON object for the capital of France: {"city": "...", "country": "..."}'


class Capital(BaseModel):
    city: str
    country: str


class GetWeather(BaseModel):
    """The weather in a city."""

    city: str


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base, api_key="unused-on-loopback", max_retries=0, timeout=180)


def chat(client: openai.OpenAI, messages: list[dict[str, Any]] = ASK, n: int = 48, **kw: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=messages, max_tokens=n,  # type: ignore[arg-type]
                                          temperature=0, **kw).choices[0]


# -- structured output ---------------------------------------------------------------------
def test_json_schema_reply_parses_and_validates(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                               "pet": {"enum": ["cat", "dog"]}},
              "required": ["name", "age", "pet"], "additionalProperties": False}
    choice = chat(client, [{"role": "user", "content": "Invent a person."}], n=64,
                  response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema,
                                                                          "strict": True}})
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), schema)


def test_json_object_reply_is_an_object(client: openai.OpenAI) -> None:
    choice = chat(client, [{"role": "user", "content": 'Return a JSON object with the key "answer" giving the '
                                                       "capital of France."}],
                  response_format={"type": "json_object"})
    assert choice.finish_reason == "stop" and isinstance(json.loads(choice.message.content), dict)


# -- tools ---------------------------------------------------------------------------------
def test_required_makes_a_call_with_valid_arguments(client: openai.OpenAI) -> None:
    choice = chat(client, tools=[WEATHER, TIME], tool_choice="required")
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name in ("get_weather", "get_time")
    schema = CITY if call.function.name == "get_weather" else {"type": "object", "maxProperties": 0}
    jsonschema.validate(json.loads(call.function.arguments), schema)


def test_a_named_function_is_the_one_called(client: openai.OpenAI) -> None:
    choice = chat(client, tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    (call,) = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_time", {})


def test_auto_reads_a_call_after_tool_results_in_the_history(client: openai.OpenAI) -> None:
    choice = chat(client, HISTORY, n=32, tools=[WEATHER], tool_choice="auto")
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}


def test_none_answers_in_text(client: openai.OpenAI) -> None:
    choice = chat(client, HISTORY, n=8, tools=[WEATHER], tool_choice="none")
    assert choice.message.tool_calls is None and choice.message.content
    assert choice.finish_reason in ("stop", "length")


def test_streamed_call_through_the_clients_stream_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model=MODEL, messages=ASK, max_tokens=48, temperature=0,  # type: ignore[arg-type]
                                        tools=[openai.pydantic_function_tool(GetWeather)],
                                        tool_choice="required") as stream:
        pieces = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(pieces) > 2  # the arguments arrive in pieces, not at the end in one
    (call,) = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert isinstance(call.function.parsed_arguments, GetWeather)  # type: ignore[union-attr]


def test_auto_streams_a_call_as_deltas(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=HISTORY, max_tokens=32, temperature=0,  # type: ignore[arg-type]
                                            tools=[WEATHER], stream=True)
    chunks = [c.choices[0] for c in stream if c.choices]
    calls = [tc for c in chunks for tc in c.delta.tool_calls or []]
    assert chunks[-1].finish_reason == "tool_calls" and not any(c.delta.content for c in chunks)
    assert calls[0].index == 0 and calls[0].id and calls[0].id.startswith("call_") and calls[0].type == "function"
    assert calls[0].function and calls[0].function.name == "get_weather"
    assert json.loads("".join(c.function.arguments or "" for c in calls if c.function)) == {"city": "Oslo"}


@pytest.mark.parametrize(("body", "param"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [{"type": "function"}]}, "tools.0.function"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.0.function.name"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "n": {"type": "number", "maximum": 3}}}}}], "tool_choice": "required"}, "tools[0].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": "auto", "response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [WEATHER], "logprobs": True}, "logprobs"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]},
     "messages.0.tool_calls.0.function"),
])
def test_malformed_requests_are_refused_naming_the_field(server: Server, body: dict[str, Any], param: str) -> None:
    r = httpx.post(f"{server.base}/chat/completions", json={"model": MODEL, "messages": ASK, **body}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


# -- Ollama --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ollama_client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=180)


OPTIONS = {"temperature": 0, "num_predict": 64}


def test_ollama_format_json_and_schema(ollama_client: ollama.Client) -> None:
    r = ollama_client.chat(model=MODEL, messages=[{"role": "user", "content": FILL}], format="json", options=OPTIONS)
    assert isinstance(json.loads(r.message.content or ""), dict)
    r = ollama_client.chat(model=MODEL, messages=[{"role": "user", "content": "The capital of France?"}],
                           format=Capital.model_json_schema(), options=OPTIONS)
    Capital.model_validate_json(r.message.content or "")
    g = ollama_client.generate(model=MODEL, prompt="The capital of France?", format=Capital.model_json_schema(),
                               options=OPTIONS)
    Capital.model_validate_json(g.response)


def test_ollama_tools_in_its_shape(ollama_client: ollama.Client) -> None:
    history = [*HISTORY[:1], {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 C", "tool_name": "get_weather"}, *HISTORY[3:]]
    r = ollama_client.chat(model=MODEL, messages=history, tools=[WEATHER], options=OPTIONS)
    assert r.message.tool_calls is not None
    (call,) = r.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Oslo"}
    chunks = list(ollama_client.chat(model=MODEL, messages=history, tools=[WEATHER], options=OPTIONS, stream=True))
    streamed = [c for c in chunks if c.message.tool_calls]
    assert chunks[-1].done and len(streamed) == 1 and streamed[0].message.tool_calls == r.message.tool_calls


def test_ollama_refuses_a_format_it_cannot_enforce(server: Server) -> None:
    r = httpx.post(f"{server.url}/api/chat", json={"model": MODEL, "messages": ASK, "stream": False,
                                                   "format": {"type": "string", "format": "email"}}, timeout=30)
    assert r.status_code == 400 and "email" in r.json()["error"]


# -- LangChain -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_langchain_with_structured_output(server: Server, method: str) -> None:
    llm = ChatOpenAI(base_url=server.base, api_key="unused-on-loopback", model=MODEL,  # type: ignore[arg-type]
                     temperature=0, max_tokens=64, max_retries=0)
    result = llm.with_structured_output(Capital, method=method).invoke(FILL)  # type: ignore[arg-type]
    assert isinstance(result, Capital) and result.city
