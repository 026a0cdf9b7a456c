"""Tool calls: the grammar that forces one, reading them out of model text, and streaming them
as OpenAI's deltas. Pure: no I/O, the routes call these.

A model calls a tool by answering with a JSON object {"name": ..., "arguments": {...}}, bare, in
a ```json fence, as a list of such objects, or in <tool_call>...</tool_call> blocks (the Hermes
and Qwen convention that templates with tool support teach). With tool_choice "required" or a
named function the grammar lets it write nothing else.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hearth.server.structured import checked_schema, grammar_of

NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_HEAD = re.compile(r'^\s*\{\s*"name"\s*:\s*"([^"\\]*)"\s*,\s*"arguments"\s*:\s*')


@dataclass(frozen=True)
class Call:
    name: str
    arguments: str
    """A JSON object's text, as OpenAI sends function.arguments."""
    id: str

    def openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    def ollama(self) -> dict[str, Any]:
        return {"function": {"name": self.name, "arguments": json.loads(self.arguments)}}


def new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _prefixed_refs(node: Any, prefix: str) -> Any:
    """A tool's parameters with its local $refs renamed, so that several tools' $defs can live
    side by side at the root of one schema."""
    if isinstance(node, list):
        return [_prefixed_refs(n, prefix) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _prefixed_refs(v, prefix) for k, v in node.items() if k not in ("$defs", "definitions")}
    if isinstance(node.get("$ref"), str):
        out["$ref"] = re.sub(r"^#/(\$defs|definitions)/", f"#/$defs/{prefix}", node["$ref"])
    return out


def call_grammar(tools: list[dict[str, Any]], only: str | None = None) -> str:
    """The grammar of one call {"name": ..., "arguments": {...}} of any of `tools` (OpenAI's
    function tools), or of the tool named `only`. Parameters the grammar cannot enforce are
    refused (InvalidRequest naming tools[i].function.parameters)."""
    alternatives: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        fn = tool["function"]
        if only is not None and fn["name"] != only:
            continue
        params = checked_schema(fn.get("parameters") or NO_PARAMETERS, f"tools[{i}].function.parameters")
        prefix = f"t{i}-"
        for key in ("$defs", "definitions"):
            defs |= {f"{prefix}{n}": _prefixed_refs(s, prefix) for n, s in params.get(key, {}).items()}
        alternatives.append({"type": "object", "properties": {"name": {"const": fn["name"]},
                                                              "arguments": _prefixed_refs(params, prefix)},
                             "required": ["name", "arguments"], "additionalProperties": False})
    schema: dict[str, Any] = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    return grammar_of(schema | ({"$defs": defs} if defs else {}), "tools")


def _one(obj: Any, names: set[str], make_id: Callable[[], str]) -> Call | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or obj["name"] not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return Call(obj["name"], json.dumps(args, ensure_ascii=False), make_id())


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_calls(text: str, names: set[str], make_id: Callable[[], str] = new_id) -> list[Call] | None:
    """The tool calls `text` is, or None when it is anything else (plain content): every call
    must name one of `names` and carry an object of arguments."""
    text = text.strip()
    blocks = _BLOCK.findall(text)
    if blocks:
        if _BLOCK.sub("", text).strip():
            return None
        found = [_json(b) for b in blocks]
    else:
        fenced = _FENCE.match(text)
        value = _json(fenced.group(1) if fenced else text)
        found = value if isinstance(value, list) else [value]
    calls = [_one(obj, names, make_id) for obj in found]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


def could_be_call(text: str) -> bool:
    """Whether text seen so far may still turn out to be a tool call (its start fits one)."""
    head = text.lstrip()
    if not head:
        return True
    return head[0] in "{[" or any(m.startswith(head[:len(m)]) for m in ("<tool_call>", "```"))


def _object_end(text: str) -> int | None:
    """Where the JSON object `text` begins with ends (index after its '}'), or None if not yet."""
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


class CallStream:
    """Model text in, OpenAI chat deltas out, for a request with tools.

    `forced` (tool_choice required or named: the grammar allows one call and nothing else): the
    call's name goes out as soon as it is written, then its arguments piece by piece. Otherwise
    text that may be a call is held back until the end and then sent as a call or as content;
    text that cannot be one streams as content from its first character.
    """

    def __init__(self, names: set[str], forced: bool, parallel: bool = True,
                 make_id: Callable[[], str] = new_id) -> None:
        self.names, self.forced, self.parallel, self.make_id = names, forced, parallel, make_id
        self.text = ""
        self.content = False
        """Decided: plain content."""
        self.sent_args = -1
        """Characters of the arguments sent, once the forced call's name went out."""
        self.calls = 0

    def feed(self, piece: str) -> list[dict[str, Any]]:
        self.text += piece
        if self.content:
            return [{"content": piece}]
        if not self.forced:
            if could_be_call(self.text):
                return []
            self.content = True
            return [{"content": self.text}]
        if self.sent_args < 0:
            head = _HEAD.match(self.text)
            if head is None:
                return []
            self.sent_args, self.calls = 0, 1
            opening = {"index": 0, "id": self.make_id(), "type": "function",
                       "function": {"name": head.group(1), "arguments": ""}}
            return [{"tool_calls": [opening]}, *self._more_args()]
        return self._more_args()

    def _more_args(self) -> list[dict[str, Any]]:
        head = _HEAD.match(self.text)
        assert head is not None
        args = self.text[head.end():]
        end = _object_end(args)
        ready = args[:end] if end is not None else args
        piece = ready[self.sent_args:]
        if not piece:
            return []
        self.sent_args = len(ready)
        return [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}]

    def finish(self, reason: str) -> tuple[list[dict[str, Any]], str]:
        """The deltas still held back, and the finish reason to send."""
        if self.content:
            return [], reason
        if self.forced and self.sent_args >= 0:
            return [], "tool_calls" if reason == "stop" else reason
        calls = parse_calls(self.text, self.names, self.make_id)
        if calls is None:
            self.content = True
            return ([{"content": self.text}] if self.text else []), reason
        if not self.parallel:
            calls = calls[:1]
        self.calls = len(calls)
        return [{"tool_calls": [{"index": i} | c.openai()]} for i, c in enumerate(calls)], "tool_calls"
