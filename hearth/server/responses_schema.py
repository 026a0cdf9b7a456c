"""The request body of /v1/responses (OpenAI's Responses API), validated strictly.

hearth answers a Responses request by running it as a chat request, so every field here is one
the chat path can honour; a field it cannot (stored responses, reasoning, built-in tools...)
is refused with a 400 naming it, and an unknown field likewise (extra="forbid").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hearth.server.schemas import Name, Text

TEXT_PARTS = ("input_text", "output_text", "refusal")
LOGPROBS = "message.output_text.logprobs"  # the one `include` hearth has
FunctionName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]  # as OpenAI's chat API has it

_NO_STORE = ("hearth does not store responses: send the whole conversation in 'input' (the previous "
             "response's output items, then the new message)")
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    # field: (values that ask for nothing hearth lacks, why anything else is refused)
    "previous_response_id": ((), _NO_STORE),
    "conversation": ((), _NO_STORE),
    "store": ((False,), _NO_STORE + "; send store: false or omit it"),
    "background": ((False,), "hearth answers in the foreground; omit 'background' or send false"),
    "reasoning": ((), "hearth's models take no reasoning settings; omit 'reasoning'"),
    "include": (([], [LOGPROBS]), f"hearth can include only {LOGPROBS!r} (it has no reasoning, search "
                                 "results or images to include)"),
    "truncation": (("disabled",), "hearth never drops part of the conversation; omit 'truncation' "
                                  "or send 'disabled' (a conversation too long fails with "
                                  "context_length_exceeded)"),
    "text": (({"format": {"type": "text"}}, {}),
             "structured output is not available through /v1/responses; use /v1/chat/completions "
             "with response_format, or omit 'text' (plain text)"),
    "max_tool_calls": ((), "hearth cannot cap the number of tool calls; omit 'max_tool_calls'"),
    "prompt": ((), "hearth has no stored prompt templates; send the text in 'input' and 'instructions'"),
    "prompt_cache_key": ((), "hearth's prompt cache takes no settings; omit 'prompt_cache_key'"),
    "prompt_cache_retention": ((), "hearth's prompt cache takes no settings; omit 'prompt_cache_retention'"),
    "prompt_cache_options": ((), "hearth's prompt cache takes no settings; omit 'prompt_cache_options'"),
    "service_tier": (("auto", "default"), "hearth has one service tier; omit 'service_tier' or send 'auto'"),
    "stream_options": (({}, {"include_obfuscation": False}),
                       "hearth does not pad streamed events; omit 'stream_options' or send "
                       "include_obfuscation: false"),
    "context_management": ((), "hearth does not compact conversations; omit 'context_management'"),
    "moderation": ((), "hearth does not moderate; omit 'moderation'"),
    "image": ((), "hearth generates text only; omit 'image'"),
    "access_programs": ((), "hearth has no access programs; omit 'access_programs'"),
    "background_options": ((), "hearth answers in the foreground; omit 'background_options'"),
}


class ContentPart(BaseModel):
    """A text part: input_text (the client's), output_text or refusal (a previous reply's)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["input_text", "output_text", "refusal"]
    text: Text | None = None
    refusal: Text | None = None
    annotations: list[Any] | None = None  # sent back with a previous reply's output_text
    logprobs: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, v: Any) -> Any:
        """Before the fields: an image part is refused as one, not for its unknown 'image_url'."""
        kind = v.get("type") if isinstance(v, dict) else None
        if isinstance(kind, str) and kind not in TEXT_PARTS:
            raise ValueError(f"hearth reads text only ({', '.join(TEXT_PARTS)}); a {kind!r} part is not supported")
        return v

    @model_validator(mode="after")
    def _has_its_text(self) -> ContentPart:
        key = "refusal" if self.type == "refusal" else "text"
        if getattr(self, key) is None:
            raise ValueError(f"a {self.type!r} part needs its '{key}'")
        return self

    def plain(self) -> str:
        return (self.refusal if self.type == "refusal" else self.text) or ""


def _joined(content: str | list[ContentPart]) -> str:
    return content if isinstance(content, str) else "".join(p.plain() for p in content)


class MessageItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Text | list[ContentPart]
    id: Name | None = None  # a previous reply's message, sent back
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: Literal["commentary", "final_answer"] | None = None

    def text(self) -> str:
        return _joined(self.content)


class FunctionCallItem(BaseModel):
    """A tool call the model made in an earlier turn."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function_call"]
    call_id: Name
    name: FunctionName
    arguments: Text
    id: Name | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(BaseModel):
    """What the client's function returned for a call."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function_call_output"]
    call_id: Name
    output: Text | list[ContentPart]
    id: Name | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None

    def text(self) -> str:
        return _joined(self.output)


def _item_type(item: Any) -> str | None:
    kind = item.get("type", "message") if isinstance(item, dict) else getattr(item, "type", None)
    return f"item[{kind}]" if isinstance(kind, str) else None


# The tags are bracketed so that error paths read 'input.0.content', not 'input.0.message.content'
# (the 400's field path leaves out bracketed union tags).
InputItem = Annotated[
    Annotated[MessageItem, Tag("item[message]")]
    | Annotated[FunctionCallItem, Tag("item[function_call]")]
    | Annotated[FunctionCallOutputItem, Tag("item[function_call_output]")],
    Discriminator(_item_type, custom_error_type="item_type", custom_error_message=(
        "hearth reads 'message', 'function_call' and 'function_call_output' items only "
        "(no item references, reasoning or built-in tool items)")),
]


class FunctionTool(BaseModel):
    """A function tool in the Responses shape: flat, name at the top."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    name: FunctionName
    description: Text | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _function_only(cls, v: Any) -> Any:
        """Before the fields: a built-in tool is refused as one, not for its unknown settings."""
        kind = v.get("type") if isinstance(v, dict) else None
        if isinstance(kind, str) and kind != "function":
            raise ValueError(f"hearth runs function tools only; the built-in tool {kind!r} is not available")
        return v


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    name: FunctionName


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Name | None = None
    input: Annotated[list[InputItem], Field(min_length=1, description="A string (one user message) or items")]
    instructions: Text | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stream: bool = False
    tools: list[FunctionTool] = Field(default_factory=list)
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[Text, Field(max_length=512)]] | None = Field(
        default=None, max_length=16)
    user: Name | None = None
    safety_identifier: Name | None = None

    # Fields of OpenAI's request that hearth cannot honour beyond their neutral values.
    previous_response_id: Any = None
    conversation: Any = None
    store: Any = None
    background: Any = None
    reasoning: Any = None
    include: Any = None
    truncation: Any = None
    text: Any = None
    max_tool_calls: Any = None
    prompt: Any = None
    prompt_cache_key: Any = None
    prompt_cache_retention: Any = None
    prompt_cache_options: Any = None
    service_tier: Any = None
    stream_options: Any = None
    context_management: Any = None
    moderation: Any = None
    image: Any = None
    access_programs: Any = None
    background_options: Any = None

    @field_validator("input", mode="before")
    @classmethod
    def _one_message(cls, v: Any) -> Any:
        return [{"type": "message", "role": "user", "content": v}] if isinstance(v, str) else v

    @field_validator(*UNSUPPORTED, mode="before")
    @classmethod
    def _neutral_or_refused(cls, v: Any, info: ValidationInfo) -> Any:
        neutral, why = UNSUPPORTED[str(info.field_name)]
        if v is None or any(v == n for n in neutral):
            return v
        raise ValueError(why)

    def wants_logprobs(self) -> bool:
        """Logprobs in output_text: `include` asks, or `top_logprobs` does by asking for alternatives."""
        return self.top_logprobs is not None or LOGPROBS in (self.include or [])

