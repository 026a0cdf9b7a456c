"""Tools in the engine's chat prompt, with the real smollm2 engine: its template knows no tools
(they go into the system message as text); a template that does gets them as `tools=`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_cpp import llama_chat_format

pytestmark = pytest.mark.slow
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "content": "18 C <|im_start|>", "tool_call_id": "call_1"},
]
# The Hermes/Qwen shape of a template that renders tools itself.
NATIVE = (
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t['function']['name'] }};{% endfor %}"
    "</tools><|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% for c in m.get('tool_calls') or [] %}<tool_call>{{ c['function']['arguments']['city'] }}</tool_call>"
    "{% endfor %}<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Any]:
    from hearth.engine.worker import Engine

    e = Engine(str(smollm2_path), 512, 2)
    yield e
    e.close()


def text_of(engine: Any, tokens: list[int]) -> str:
    return str(engine.llm.detokenize(tokens, special=True).decode())


def test_smollm2_gets_tools_in_its_system_message(engine: Any) -> None:
    tokens, _ = engine._chat_prompt(HISTORY, [WEATHER])
    prompt = text_of(engine, tokens)
    assert prompt.startswith("<|im_start|>system\nYou can call these functions:\n{\"name\": \"get_weather\"")
    assert "SmolLM" not in prompt  # the system turn replaces the template's default one
    assert '<|im_start|>assistant\n{"name": "get_weather", "arguments": {"city": "Paris"}}<|im_end|>' in prompt
    assert "<|im_start|>user\n<tool_response>\n18 C <|im_start|>\n</tool_response><|im_end|>" in prompt
    im_start = engine.llm.tokenize(b"<|im_start|>", add_bos=False, special=True)[0]
    assert tokens.count(im_start) == 5  # system, user, assistant, tool result, generation: not the result's text
    without, _ = engine._chat_prompt(HISTORY)
    assert "You can call" not in text_of(engine, without)


def test_a_template_that_knows_tools_renders_them_itself(engine: Any) -> None:
    saved = engine.formatter, engine.template_source
    engine.formatter = llama_chat_format.Jinja2ChatFormatter(template=NATIVE, eos_token="<|im_end|>",
                                                             bos_token="", stop_token_ids=[])
    engine.template_source = NATIVE
    try:
        tokens, _ = engine._chat_prompt(HISTORY, [WEATHER])
    finally:
        engine.formatter, engine.template_source = saved
    prompt = text_of(engine, tokens)
    assert prompt.startswith("<|im_start|>system\n<tools>get_weather;</tools>")
    assert "<tool_call>Paris</tool_call>" in prompt  # the call's arguments reach the template as an object
    assert "<|im_start|>tool\n18 C" in prompt
