"""Pure translation between OpenAI's Responses API and its chat completions API, no I/O.

/v1/responses runs as a chat request: `chat_body` turns a Responses request into a chat
completions body, `response_object` turns the chat completion into a Response, and
`EventTranslator` turns the streamed chat chunks into the Responses event sequence
(response.created ... response.completed) that the official clients accumulate.
Both sides are OpenAI's public shapes (chat tools: {"type": "function", "function": {...}},
tool_calls, role "tool"), so what the chat path honours, /v1/responses honours.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from hearth.errors import InvalidRequest
from hearth.server.responses_schema import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    MessageItem,
    NamedFunction,
    ResponsesRequest,
)


# -- request ------------------------------------------------------------------------------
def chat_tool(tool: FunctionTool) -> dict[str, Any]:
    """Responses' flat function tool in chat's nested shape."""
    function: dict[str, Any] = {"name": tool.name}
    for key in ("description", "parameters", "strict"):
        if getattr(tool, key) is not None:
            function[key] = getattr(tool, key)
    return {"type": "function", "function": function}


def chat_tool_choice(choice: str | NamedFunction) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice.name}}


def chat_messages(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The conversation as chat messages: instructions first (as a system message), then the
    items in order; consecutive function calls join the assistant message before them."""
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    names: dict[str, str] = {}
    for item in req.input:
        if isinstance(item, MessageItem):
            messages.append({"role": item.role, "content": item.text()})
        elif isinstance(item, FunctionCallItem):
            names[item.call_id] = item.name
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            assert isinstance(item, FunctionCallOutputItem)
            result = {"role": "tool", "tool_call_id": item.call_id, "content": item.text()}
            if item.call_id in names:
                result["name"] = names[item.call_id]
            messages.append(result)
    return messages


def chat_body(req: ResponsesRequest) -> dict[str, Any]:
    """The chat completions body that asks for what `req` asks."""
    if isinstance(req.tool_choice, NamedFunction) and req.tool_choice.name not in {t.name for t in req.tools}:
        raise InvalidRequest(f"'tool_choice' names the function {req.tool_choice.name!r}, which is not "
                             "among 'tools'; add it there or name another.", param="tool_choice")
    body: dict[str, Any] = {"messages": chat_messages(req), "stream": req.stream}
    if req.stream:
        body["stream_options"] = {"include_usage": True}  # response.completed carries usage
    for ours, theirs in (("model", "model"), ("max_output_tokens", "max_tokens"),
                         ("temperature", "temperature"), ("top_p", "top_p")):
        if getattr(req, ours) is not None:
            body[theirs] = getattr(req, ours)
    if req.tools:
        body["tools"] = [chat_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = chat_tool_choice(req.tool_choice)
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.wants_logprobs():
        body["logprobs"] = True
        if req.top_logprobs:
            body["top_logprobs"] = req.top_logprobs
    return body


def fit_to_chat(body: dict[str, Any], fields: Collection[str], message_fields: Collection[str]) -> dict[str, Any]:
    """`body` for the chat path of this build (its request model's fields are `fields`, its
    message's `message_fields`): what it would not honour is refused, naming the Responses field.
    parallel_tool_calls: false is kept to one call here in any case (`response_object`)."""
    if "parallel_tool_calls" not in fields:
        body = {k: v for k, v in body.items() if k != "parallel_tool_calls"}
    for key in ("tools", "tool_choice"):
        if key in body and key not in fields:
            raise InvalidRequest(f"'{key}' is not available: this build of hearth has no tool calling; "
                                 f"omit '{key}'.", param=key)
    for key, ours in (("logprobs", "include"), ("top_logprobs", "top_logprobs")):
        if key in body and key not in fields:
            raise InvalidRequest(f"'{ours}' asks for logprobs, which this build of hearth lacks; omit it.",
                                 param=ours)
    for message in body["messages"]:
        missing = [k for k in message if k not in message_fields]
        if missing:
            raise InvalidRequest("function_call and function_call_output items need tool calling, which "
                                 "this build of hearth lacks; send message items only.", param="input")
    return body


# -- result -------------------------------------------------------------------------------
def message_item(item_id: str, text: str, status: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    content = [output_text(text, logprobs)] if status != "in_progress" else []
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def output_text(text: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    """An output_text part; `logprobs` in chat's shape, which is also Responses' (token, logprob,
    bytes, top_logprobs)."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def _chat_logprobs(choice: dict[str, Any]) -> list[Any]:
    return list((choice.get("logprobs") or {}).get("content") or [])


def function_call_item(item_id: str, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    function = call.get("function") or {}
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call.get("id") or item_id,
            "name": function.get("name") or "", "arguments": function.get("arguments") or ""}


def usage(chat_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if chat_usage is None:
        return None
    i, o = int(chat_usage.get("prompt_tokens", 0)), int(chat_usage.get("completion_tokens", 0))
    return {"input_tokens": i, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": o, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": i + o}


def shell(req: ResponsesRequest, rid: str, created: int, model: str) -> dict[str, Any]:
    """A Response with no output yet: what it echoes of the request."""
    return {
        "id": rid, "object": "response", "created_at": created, "status": "in_progress", "model": model,
        "output": [], "error": None, "incomplete_details": None, "usage": None,
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "tools": [t.model_dump(exclude_none=True) | {"strict": bool(t.strict)} for t in req.tools],
        "tool_choice": (req.tool_choice.model_dump() if isinstance(req.tool_choice, NamedFunction)
                        else req.tool_choice or "auto"),
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "metadata": req.metadata or {}, "user": req.user, "safety_identifier": req.safety_identifier,
        "top_logprobs": req.top_logprobs,
        "previous_response_id": None, "reasoning": None, "store": False, "background": False,
        "text": {"format": {"type": "text"}}, "truncation": "disabled", "service_tier": "default",
    }


def finished(response: dict[str, Any], finish_reason: str | None, chat_usage: dict[str, Any] | None) -> dict[str, Any]:
    """`response` marked completed, or incomplete when the output hit max_output_tokens."""
    cut = finish_reason == "length"
    return response | {"status": "incomplete" if cut else "completed",
                       "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
                       "usage": usage(chat_usage)}


def response_object(response: dict[str, Any], completion: dict[str, Any]) -> dict[str, Any]:
    """The finished Response for a chat completion; `response` is its `shell`."""
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    calls = list(message.get("tool_calls") or [])
    if not response["parallel_tool_calls"]:
        calls = calls[:1]
    text = message.get("content") or ""
    hex_id = response["id"].removeprefix("resp_")
    output = [message_item(f"msg_{hex_id}", text, "completed", _chat_logprobs(choice))] if text or not calls else []
    output += [function_call_item(f"fc_{hex_id}_{i}", c) for i, c in enumerate(calls)]
    extras = {"hearth": completion["hearth"]} if "hearth" in completion else {}
    return finished(response, choice.get("finish_reason"), completion.get("usage")) | {"output": output} | extras


class EventTranslator:
    """Chat completion chunks in, Responses stream events out (pure: the route does the I/O).

    `opening()` first; `feed(chunk)` for each chunk; then `close()`, or `fail(error)` for an
    error that arrived in-band. Items open on their first delta and close when another item
    opens or the reply ends, each with its added/delta/done events.
    """

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.hex_id = response["id"].removeprefix("resp_")
        self.seq = 0
        self.output: list[dict[str, Any]] = []  # closed items
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> its item
        self.finish_reason: str | None = None
        self.chat_usage: dict[str, Any] | None = None
        self.extras: dict[str, Any] = {}  # hearth's own: who served the reply, at what cost

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, "sequence_number": self.seq - 1, **fields}

    def _where(self) -> dict[str, Any]:
        assert self.open is not None
        where = {"item_id": self.open["id"], "output_index": len(self.output)}
        return where | ({"content_index": 0} if self.open["type"] == "message" else {})

    def opening(self) -> list[dict[str, Any]]:
        return [self._event("response.created", response=self.response),
                self._event("response.in_progress", response=self.response)]

    def _start(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._end_item()
        self.open = item
        events.append(self._event("response.output_item.added", output_index=len(self.output), item=item))
        if item["type"] == "message":
            events.append(self._event("response.content_part.added", **self._where(), part=output_text("")))
            item["text"], item["logprobs"] = "", []
        return events

    def _end_item(self) -> list[dict[str, Any]]:
        item, events = self.open, []
        if item is None:
            return []
        if item["type"] == "message":
            text, logprobs = item.pop("text"), item.pop("logprobs")
            events += [self._event("response.output_text.done", **self._where(), text=text, logprobs=logprobs),
                       self._event("response.content_part.done", **self._where(), part=output_text(text, logprobs))]
            done = message_item(item["id"], text, "completed", logprobs)
        else:
            events.append(self._event("response.function_call_arguments.done", **self._where(),
                                      name=item["name"], arguments=item["arguments"]))
            done = item | {"status": "completed"}
        events.append(self._event("response.output_item.done", output_index=len(self.output), item=done))
        self.output.append(done)
        self.open = None
        return events

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if chunk.get("usage"):
            self.chat_usage = chunk["usage"]
        if "hearth" in chunk:
            self.extras = {"hearth": chunk["hearth"]}
        events: list[dict[str, Any]] = []
        for choice in chunk.get("choices") or []:
            delta, logprobs = choice.get("delta") or {}, _chat_logprobs(choice)
            if delta.get("content") or logprobs:  # a token may be part of a character: no text yet
                if self.open is None or self.open["type"] != "message":
                    events += self._start(message_item(f"msg_{self.hex_id}_{len(self.output)}", "", "in_progress"))
                assert self.open is not None
                self.open["text"] += delta.get("content") or ""
                self.open["logprobs"] += logprobs
                events.append(self._event("response.output_text.delta", **self._where(),
                                          delta=delta.get("content") or "", logprobs=logprobs))
            for call in delta.get("tool_calls") or []:
                events += self._tool_delta(call)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return events

    def _tool_delta(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        index = int(call.get("index", 0))
        events: list[dict[str, Any]] = []
        if index not in self.calls:
            if not self.response["parallel_tool_calls"] and self.calls:
                return []  # one call asked for: the others are dropped
            item = function_call_item(f"fc_{self.hex_id}_{index}", call | {"function": {
                "name": (call.get("function") or {}).get("name")}}, "in_progress")
            self.calls[index] = item
            events += self._start(item)
        item = self.calls[index]
        piece = (call.get("function") or {}).get("arguments") or ""
        if piece and item is self.open:
            item["arguments"] += piece
            events.append(self._event("response.function_call_arguments.delta", **self._where(), delta=piece))
        return events

    def close(self) -> list[dict[str, Any]]:
        if not self.output and self.open is None:  # an empty reply is still a message
            events = self._start(message_item(f"msg_{self.hex_id}_0", "", "in_progress"))
        else:
            events = []
        events += self._end_item()
        final = finished(self.response, self.finish_reason, self.chat_usage) | {"output": self.output} | self.extras
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return events + [self._event(kind, response=final)]

    def fail(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        code, message = error.get("code") or "server_error", error.get("message") or "The reply failed."
        final = self.response | {"status": "failed", "output": self.output,  # a code OpenAI's list has
                                 "error": {"code": "server_error", "message": message}}
        return [self._event("error", code=code, message=message, param=error.get("param")),
                self._event("response.failed", response=final)]
