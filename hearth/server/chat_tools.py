"""Structured output and tool calls on the chat routes: what a request asks of the engine (a
grammar, tools to render) and how its reply is presented (content or tool calls, whole or as
OpenAI's stream deltas)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import StreamingResponse

from hearth.engine.events import Done, Token
from hearth.errors import HearthError, InvalidRequest
from hearth.net.http_errors import error_body
from hearth.public_swarm.sse import PublicCost
from hearth.server.schemas import ChatCompletionRequest, NamedToolChoice, OllamaChatRequest, Tool
from hearth.server.streaming import Events, noting_departure, public_part
from hearth.server.structured import json_object_grammar, ollama_format_grammar, schema_grammar
from hearth.server.tool_calls import Call, CallStream, call_grammar, parse_calls


@dataclass(frozen=True)
class Plan:
    """What a chat request asks beyond text."""

    grammar: str | None = None
    tools: list[dict[str, Any]] | None = None
    """Rendered into the prompt."""
    names: set[str] = field(default_factory=set)
    """Tools the reply may call: empty, the reply is only content."""
    forced: bool = False
    """The grammar allows one call and nothing else."""
    parallel: bool = True

    def fields(self) -> dict[str, Any]:
        """Engine request fields."""
        return ({"grammar": self.grammar} if self.grammar else {}) | ({"tools": self.tools} if self.tools else {})

    def calls(self, text: str) -> list[Call] | None:
        calls = parse_calls(text, self.names) if self.names else None
        return calls[:1] if calls and not self.parallel else calls


def _tool_dicts(tools: list[Tool] | None) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) for t in tools or []]


def openai_plan(body: ChatCompletionRequest) -> Plan:
    """The request's response_format, tools and tool_choice, or InvalidRequest naming the field."""
    tools = _tool_dicts(body.tools)
    names = {t["function"]["name"] for t in tools}
    if len(names) < len(tools):
        raise InvalidRequest("Two tools have the same name; give each function its own.", param="tools")
    choice = body.tool_choice
    if choice is not None and not tools:
        raise InvalidRequest("'tool_choice' needs 'tools'; send the functions the model may call.", param="tool_choice")
    only = choice.function.name if isinstance(choice, NamedToolChoice) else None
    if only is not None and only not in names:
        raise InvalidRequest(f"tool_choice names {only!r}, which is not among the tools.", param="tool_choice")
    grammar = None
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_object":
        grammar = json_object_grammar()
    elif fmt is not None and fmt.json_schema is not None:
        grammar = schema_grammar(fmt.json_schema.schema_ if fmt.json_schema.schema_ is not None else {},
                                 "response_format.json_schema.schema")
    if not tools or choice == "none":
        return Plan(grammar=grammar)
    if grammar is not None:
        raise InvalidRequest("hearth cannot constrain a reply to both a response_format and tool calls; drop "
                             "response_format, or set tool_choice to 'none'.", param="response_format")
    if body.logprobs:
        raise InvalidRequest("hearth does not report logprobs of tool calls; drop logprobs, or set tool_choice "
                             "to 'none'.", param="logprobs")
    parallel = body.parallel_tool_calls is not False
    if choice == "required" or only is not None:
        return Plan(grammar=call_grammar(tools, only), tools=tools, names=names, forced=True, parallel=parallel)
    return Plan(tools=tools, names=names, parallel=parallel)


def ollama_plan(body: OllamaChatRequest) -> Plan:
    """Ollama's `format` and `tools` (it has no tool_choice: the model chooses)."""
    grammar = ollama_format_grammar(body.format)
    tools = _tool_dicts(body.tools)
    if tools and grammar is not None:
        raise InvalidRequest("hearth cannot constrain a reply to both a format and tool calls; drop one.",
                             param="format")
    return Plan(grammar=grammar, tools=tools or None, names={t["function"]["name"] for t in tools})


def openai_message(text: str, finish: str, plan: Plan) -> tuple[dict[str, Any], str]:
    """The assistant message of a whole reply, and its finish reason. A forced call cut short by
    max_tokens is not a call: its text comes back as content, with finish_reason "length"."""
    calls = plan.calls(text)
    if calls:
        return {"role": "assistant", "content": None, "tool_calls": [c.openai() for c in calls]}, "tool_calls"
    return {"role": "assistant", "content": text}, finish


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


def openai_stream(events: Events, base: dict[str, Any], plan: Plan, include_usage: bool) -> StreamingResponse:
    """A reply that may call tools, as OpenAI's chunks: content deltas, or tool-call deltas (index,
    id, type and name first, then the arguments in pieces), ending with finish_reason "tool_calls"."""
    calls = CallStream(plan.names, plan.forced, plan.parallel)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(events), noting_departure("a streamed reply"):
            yield chunk({"role": "assistant", "content": None})
            cost: PublicCost | None = None
            try:
                async for ev in events:
                    if isinstance(ev, Token):
                        for delta in calls.feed(ev.text):
                            yield chunk(delta)
                    elif isinstance(ev, PublicCost):
                        cost = ev
                    elif isinstance(ev, Done):
                        held, finish = calls.finish(ev.finish_reason)
                        for delta in held:
                            yield chunk(delta)
                        yield chunk({}, finish)
                        if include_usage or cost is not None:
                            p, c = ev.prompt_tokens, ev.completion_tokens
                            usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
                            yield _sse(base | {"choices": [], "usage": usage, "hearth": public_part(cost)})
            except HearthError as exc:
                yield _sse(error_body(exc.message, exc.error_type, exc.code))
            yield _sse("[DONE]")

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
