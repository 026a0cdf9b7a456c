"""Tools in a chat prompt: pure.

A chat template that knows tools (it mentions `tools`, as Qwen's, Llama 3.1's and Hermes' do)
gets them as `tools=` and the conversation's calls and results as the template expects them
(Hugging Face's convention: a call's arguments as an object). A template that does not (SmolLM2's,
Gemma's, the ChatML fallback) gets the tool list as plain text in the system message, calls in
the history as the JSON the model is asked to answer with, and results as user turns in
<tool_response> blocks (the Hermes convention). Either way the request's text stays message text,
which the prompt never parses for special tokens.
"""

from __future__ import annotations

import json
from typing import Any

INSTRUCTIONS = (
    "You can call these functions:\n{listing}\n\n"
    "To call a function, answer with only a JSON object "
    '{{"name": <function name>, "arguments": <object of its arguments>}} and nothing else. '
    "Otherwise answer the user in plain text."
)


def renders_tools(template_source: str) -> bool:
    """Whether the chat template renders a tool list itself."""
    return "tools" in template_source


def _arguments(call: dict[str, Any]) -> Any:
    args = call.get("function", {}).get("arguments", "{}")
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return args
    return args


def native_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation for a template that renders tools: calls with their arguments as objects."""
    out = []
    for m in messages:
        m = dict(m, content=m.get("content") or "")
        if m.get("tool_calls"):
            m["tool_calls"] = [dict(c, function=dict(c.get("function", {}), arguments=_arguments(c)))
                               for c in m["tool_calls"]]
        out.append(m)
    return out


def _call_text(calls: list[dict[str, Any]]) -> str:
    shown = [{"name": c.get("function", {}).get("name", ""), "arguments": _arguments(c)} for c in calls]
    return json.dumps(shown[0] if len(shown) == 1 else shown, ensure_ascii=False)


def plain_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The conversation for a template that knows nothing of tools: only roles and text."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m["role"], str(m.get("content") or "")
        if role == "assistant" and m.get("tool_calls"):
            content = "\n".join(t for t in (content, _call_text(m["tool_calls"])) if t)
        elif role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        out.append({"role": role, "content": content})
    if tools:
        listing = "\n".join(json.dumps({k: v for k, v in t["function"].items() if k in ("name", "description",
                                                                                        "parameters")},
                                       ensure_ascii=False) for t in tools)
        text = INSTRUCTIONS.format(listing=listing)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{text}"}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out
