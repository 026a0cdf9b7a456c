"""The pure cores of structured output and tool calls, without sockets or a model: schemas to
grammars (and what is refused), tool-call parsing, streamed deltas, tools in a prompt.

Grammars are checked by parsing them with llama.cpp's own grammar parser (through the engine's
sampler, with the real smollm2 vocabulary) in tests/server/test_tools_api.py; here, what they
accept is checked by llama.cpp's grammar parser over text alone where it matters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.engine.tool_prompt import native_messages, plain_messages, renders_tools
from hearth.errors import InvalidRequest
from hearth.server.structured import checked_schema, json_object_grammar, ollama_format_grammar, schema_grammar
from hearth.server.tool_calls import CallStream, call_grammar, could_be_call, parse_calls

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time"}}
NAMES = {"get_weather", "get_time"}


def ids() -> Any:
    n = iter(range(100))
    return lambda: f"call_{next(n)}"


# -- schemas to grammars -------------------------------------------------------------------
def test_a_pydantic_schema_becomes_a_grammar_of_its_fields() -> None:
    schema = {"$defs": {"Pet": {"properties": {"kind": {"enum": ["cat", "dog"], "title": "Kind", "type": "string"}},
                                "required": ["kind"], "title": "Pet", "type": "object"}},
              "properties": {"name": {"title": "Name", "type": "string"},
                             "pet": {"$ref": "#/$defs/Pet"},
                             "nick": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}},
              "required": ["name", "pet"], "title": "Person", "type": "object"}
    grammar = schema_grammar(schema, "response_format.json_schema.schema")
    assert 'root ::= "{" space name-kv "," space pet-kv' in grammar
    assert '"\\"cat\\"" | "\\"dog\\""' in grammar
    assert "Name" not in grammar  # annotations dropped


def test_strings_exclude_raw_control_characters() -> None:
    # The converter's own string rule lets a raw newline into a string, which no JSON parser takes.
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in json_object_grammar()


@pytest.mark.parametrize(("schema", "named"), [
    ({"type": "integer", "minimum": 0}, "minimum"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
    ({"type": "string", "format": "email"}, "'email'"),
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not"),
    ({"type": "string", "pattern": "^a+$", "maxLength": 3}, "maxLength beside pattern"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "'required'"),
    ({"$ref": "https://example.invalid/s.json"}, "$ref"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    ({"allOf": [{"type": "string"}]}, "allOf"),
])
def test_what_the_grammar_cannot_enforce_is_refused_by_name(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        schema_grammar(schema, "response_format.json_schema.schema")
    assert caught.value.param == "response_format.json_schema.schema"
    assert named in caught.value.message and "cannot enforce" in caught.value.message


def test_the_path_to_the_refused_part_is_named() -> None:
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "number", "maximum": 3}}}}
    with pytest.raises(InvalidRequest, match=r"schema\.properties\.items\.items' uses maximum"):
        schema_grammar(schema, "response_format.json_schema.schema")


def test_a_schema_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        schema_grammar("string", "format")
    assert caught.value.param == "format"


def test_empty_schema_means_any_value_not_only_objects() -> None:
    assert checked_schema({}, "f") == checked_schema({"description": "anything"}, "f")
    assert "anyOf" in checked_schema({}, "f")


def test_ollama_format() -> None:
    assert ollama_format_grammar(None) is None and ollama_format_grammar("") is None
    assert ollama_format_grammar("json") == json_object_grammar()
    assert "age-kv" in (ollama_format_grammar({"type": "object", "properties": {"age": {"type": "integer"}}}) or "")
    with pytest.raises(InvalidRequest) as caught:
        ollama_format_grammar(["json"])
    assert caught.value.param == "format"


# -- tool calls ----------------------------------------------------------------------------
def test_call_grammar_of_all_tools_or_the_named_one() -> None:
    both = call_grammar([WEATHER, TIME])
    assert "root ::= alternative-0 | alternative-1" in both and '"\\"get_time\\""' in both
    one = call_grammar([WEATHER, TIME], "get_time")
    assert "get_weather" not in one and 'root ::= "{" space name-kv "," space arguments-kv "}" space' in one
    assert 'arguments ::= "{" space  "}" space' in one  # no parameters: an empty object


def test_call_grammar_refuses_parameters_it_cannot_enforce() -> None:
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 1}}}}}
    with pytest.raises(InvalidRequest) as caught:
        call_grammar([WEATHER, bad])
    assert caught.value.param == "tools[1].function.parameters"


def test_two_tools_may_have_defs_of_the_same_name() -> None:
    def tool(name: str, kind: str) -> dict[str, Any]:
        return {"type": "function", "function": {"name": name, "parameters": {
            "$defs": {"Arg": {"type": kind}}, "type": "object",
            "properties": {"a": {"$ref": "#/$defs/Arg"}}, "required": ["a"]}}}
    grammar = call_grammar([tool("f", "string"), tool("g", "integer")])
    assert "alternative-0-arguments-a ::= string" in grammar
    assert "alternative-1-arguments-a ::= integer" in grammar


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    ' <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
    '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
    '{"name": "get_weather", "parameters": {"city": "Paris"}}',
])
def test_calls_are_read_in_the_usual_shapes(text: str) -> None:
    calls = parse_calls(text, NAMES, ids())
    assert calls is not None and [c.openai() for c in calls] == [
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    assert calls[0].ollama() == {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


def test_several_calls() -> None:
    text = '[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Oslo"}}]'
    calls = parse_calls(text, NAMES, ids())
    assert calls is not None and [c.name for c in calls] == ["get_time", "get_weather"]
    blocks = "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>"
    assert len(parse_calls(blocks, NAMES) or []) == 2


@pytest.mark.parametrize("text", [
    "It is sunny in Paris.",
    '{"name": "get_stock", "arguments": {}}',  # not a declared tool
    '{"name": "get_weather", "arguments": [1]}',
    '{"city": "Paris"}',
    'Sure! <tool_call>{"name": "get_time", "arguments": {}}</tool_call>',  # text beside the call
    '{"name": "get_weather", "arguments": {"city": "Par',  # cut short
])
def test_anything_else_is_content(text: str) -> None:
    assert parse_calls(text, NAMES) is None


@given(st.text(max_size=80))
def test_parse_never_raises(text: str) -> None:
    calls = parse_calls(text, NAMES)
    assert calls is None or all(isinstance(json.loads(c.arguments), dict) for c in calls)


def test_could_be_call() -> None:
    assert could_be_call("") and could_be_call("  {") and could_be_call("<tool") and could_be_call("``")
    assert not could_be_call("Hello") and not could_be_call("<b>") and not could_be_call(" It")


def _run(stream: CallStream, pieces: list[str], reason: str = "stop") -> tuple[list[dict[str, Any]], str]:
    out = [d for p in pieces for d in stream.feed(p)]
    held, finish = stream.finish(reason)
    return out + held, finish


def test_a_forced_call_streams_its_name_then_its_arguments() -> None:
    text = '{ "name": "get_weather", "arguments": {"city": "Pa}ri\\"s"} } '
    deltas, finish = _run(CallStream(NAMES, forced=True, make_id=ids()), list(text))
    assert finish == "tool_calls"
    assert deltas[0] == {"tool_calls": [{"index": 0, "id": "call_0", "type": "function",
                                         "function": {"name": "get_weather", "arguments": ""}}]}
    assert len(deltas) > 3
    args = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas)
    assert json.loads(args) == {"city": 'Pa}ri"s'}


def test_a_forced_call_cut_short_finishes_with_length() -> None:
    deltas, finish = _run(CallStream(NAMES, forced=True), ['{"name": "get_weather", "arguments": {"ci'], "length")
    assert finish == "length" and deltas[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    deltas, finish = _run(CallStream(NAMES, forced=True), ['{"na'], "length")
    assert (deltas, finish) == ([{"content": '{"na'}], "length")


def test_auto_streams_plain_text_at_once_and_holds_what_may_be_a_call() -> None:
    stream = CallStream(NAMES, forced=False)
    assert stream.feed(" It") == [{"content": " It"}]
    assert stream.feed(" is") == [{"content": " is"}]
    assert stream.finish("stop") == ([], "stop")
    deltas, finish = _run(CallStream(NAMES, forced=False, make_id=ids()),
                          ["<tool_", 'call>{"name": "get_time", ', '"arguments": {}}</tool_call>'])
    assert finish == "tool_calls" and deltas == [{"tool_calls": [
        {"index": 0, "id": "call_0", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}]
    deltas, finish = _run(CallStream(NAMES, forced=False), ['{"a": ', "1}"])
    assert (deltas, finish) == ([{"content": '{"a": 1}'}], "stop")


def test_parallel_false_keeps_the_first_call() -> None:
    text = '[{"name": "get_time", "arguments": {}}, {"name": "get_time", "arguments": {}}]'
    deltas, _ = _run(CallStream(NAMES, forced=False, parallel=False), [text])
    assert len(deltas) == 1


# -- tools in the prompt -------------------------------------------------------------------
HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "content": "18 C", "tool_call_id": "call_1"},
]


def test_plain_rendering_puts_tools_in_the_system_message_and_calls_in_the_history() -> None:
    msgs = plain_messages(HISTORY, [WEATHER])
    assert msgs[0]["role"] == "system" and '"name": "get_weather"' in msgs[0]["content"]
    assert "answer with only a JSON object" in msgs[0]["content"]
    assert json.loads(msgs[2]["content"]) == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert msgs[3] == {"role": "user", "content": "<tool_response>\n18 C\n</tool_response>"}
    with_system = plain_messages([{"role": "system", "content": "Be brief."}, *HISTORY], [WEATHER])
    assert with_system[0]["content"].startswith("Be brief.\n\nYou can call") and len(with_system) == 4
    assert plain_messages(HISTORY, None)[0]["role"] == "user"


def test_native_rendering_gives_the_template_arguments_as_objects() -> None:
    msgs = native_messages(HISTORY)
    assert msgs[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert msgs[2]["tool_call_id"] == "call_1"
    assert renders_tools("{% if tools %}{{ tools | tojson }}{% endif %}")
    assert not renders_tools("{% for m in messages %}{{ m['content'] }}{% endfor %}")
