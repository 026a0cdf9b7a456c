"""Request bodies of the OpenAI- and Ollama-compatible routes, validated strictly."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hearth.server.durations import KeepAlive
from hearth.server.fields import without_empty_extras

ENGINE_TOP_K = 40
"""The top-k of hearth's one sampler chain (hearth.engine.sampling)."""


def _unicode(value: str) -> str:
    """JSON can carry lone surrogates (\\ud800), which are not text: refuse them here, by field,
    rather than fail later when the text is encoded."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode text (a lone surrogate at character {exc.start})") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]
Name = Annotated[Text, Field(max_length=256)]
TokenId = Annotated[StrictInt, Field(ge=0, lt=2**31)]


class _Strict(BaseModel):
    """A request part that refuses fields it does not declare, by name (fields.refusal): nothing a
    client sends is silently ignored. Undeclared fields that ask for nothing (null, []) are dropped."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_empty_extras(cls, data: Any) -> Any:
        return without_empty_extras(data, cls.model_fields)


def _stop_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class TextPart(_Strict):
    type: Literal["text"]
    text: Text


FunctionName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName
    arguments: Text


class ToolCall(BaseModel):
    """A call in an assistant message of the history."""

    model_config = ConfigDict(extra="forbid")

    id: Name
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName
    description: Text | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: FunctionName
    description: Text | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type 'json_schema', and only with it")
        return self


class ChatMessage(_Strict):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: Name | None = Field(default=None, validate_default=True)
    name: Name | None = None

    @field_validator("tool_call_id")
    @classmethod
    def _tool_result_names_its_call(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("role") == "tool":
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        return v

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def for_template(self) -> dict[str, Any]:
        role = "system" if self.role == "developer" else self.role
        calls = {"tool_calls": [c.model_dump() for c in self.tool_calls]} if self.tool_calls else {}
        ids = {k: v for k, v in (("tool_call_id", self.tool_call_id), ("name", self.name)) if v is not None}
        return {"role": role, "content": self.text()} | calls | ids


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    model_config = ConfigDict(extra="forbid")

    model: Name | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: Text | list[Text] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="hearth generates one choice per request")

    @field_validator("stream_options")
    @classmethod
    def _options_of_a_stream(cls, v: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if v is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed with stream: true")
        return v

    def stops(self) -> list[str]:
        return _stop_list(self.stop)

    def engine_fields(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": _stop_list(self.stop),
        }


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)

    def texts(self) -> list[str]:
        return [m.text() for m in self.messages]

    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _newer_name(self) -> ChatCompletionRequest:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        return self

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def engine_logprobs(self) -> dict[str, Any]:
        """The engine's `logprobs` field: alternatives per token, or nothing when not asked."""
        return {"logprobs": self.top_logprobs or 0} if self.logprobs else {}


class CompletionRequest(_Sampling):
    prompt: Text | list[Text]
    max_tokens: int | None = Field(default=16, ge=1)
    suffix: Text | None = None
    """Fill-in-the-middle: the text after the completion (the model's FIM tokens lay it out)."""
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False

    @model_validator(mode="after")
    def _echo_without_logprobs(self) -> CompletionRequest:
        if self.echo and self.logprobs is not None:
            raise ValueError("echo with logprobs would need the prompt's logprobs, which hearth does not "
                             "compute; ask for one or the other")
        return self

    def engine_logprobs(self) -> dict[str, Any]:
        return {} if self.logprobs is None else {"logprobs": self.logprobs}

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("hearth takes one prompt per request")
        return v

    def texts(self) -> list[str]:
        return [self.prompt_text()]

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def fim_fields(self) -> dict[str, Any]:
        return {} if self.suffix is None else {"suffix": self.suffix}


class EmbeddingRequest(_Strict):
    model_config = ConfigDict(extra="forbid")

    model: Name | None = None
    input: (Text | list[Annotated[Text, Field(min_length=1)]] | list[TokenId]
            | list[Annotated[list[TokenId], Field(min_length=1)]]) = Field(min_length=1)
    """Text, texts, or token ids: one list of ids, or a list of such lists (langchain sends these)."""
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    """Keep the first `dimensions` of each vector, normalized again (as OpenAI's text-embedding-3)."""

    def inputs(self) -> list[str] | list[list[int]]:
        """Texts, or id sequences, one per vector."""
        if isinstance(self.input, str):
            return [self.input]
        if self.input and all(isinstance(t, int) for t in self.input):
            return [[int(t) for t in self.input if isinstance(t, int)]]
        if all(isinstance(x, str) for x in self.input):
            return [x for x in self.input if isinstance(x, str)]
        return [list(x) for x in self.input if isinstance(x, list)]

    def texts(self) -> list[str]:
        """The texts to check against the server's limits (none for token ids)."""
        return [s for s in self.inputs() if isinstance(s, str)]


# -- Ollama ------------------------------------------------------------------------------
class OllamaOptions(_Strict):
    """The options hearth's engine honours; any other is refused by name (400)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    num_predict: int | None = None
    stop: list[Text] | None = None
    num_ctx: int | None = Field(default=None, ge=1)
    """At most the server's context window (checked by the route)."""
    top_k: int | None = None
    repeat_penalty: float | None = None

    @field_validator("top_k")
    @classmethod
    def _engine_top_k(cls, v: int | None) -> int | None:
        if v not in (None, 1, ENGINE_TOP_K):
            raise ValueError(f"hearth's sampler keeps the {ENGINE_TOP_K} most likely tokens: top_k may be "
                             f"{ENGINE_TOP_K}, or 1 (greedy), not {v}")
        return v

    @field_validator("repeat_penalty")
    @classmethod
    def _no_penalty(cls, v: float | None) -> float | None:
        if v is not None and v != 1.0:
            raise ValueError("hearth's sampler applies no repeat penalty: repeat_penalty may only be 1.0 (off)")
        return v

    def engine_fields(self) -> dict[str, Any]:
        # Ollama's num_predict: -1 (or absent) means no limit.
        limit = self.num_predict if self.num_predict is not None and self.num_predict > 0 else None
        temperature = 0.0 if self.top_k == 1 else self.temperature  # top-k 1 is greedy
        return {"max_tokens": limit, "temperature": temperature, "top_p": self.top_p,
                "seed": self.seed, "stop": list(self.stop or [])}


class OllamaFunctionCall(BaseModel):
    name: FunctionName
    arguments: dict[str, Any] = Field(default_factory=dict)


class OllamaToolCall(BaseModel):
    function: OllamaFunctionCall


class OllamaMessage(_Strict):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: Text = ""
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: Name | None = None

    def for_template(self) -> dict[str, Any]:
        """In the OpenAI shape the engine takes (a call's arguments as JSON text)."""
        calls = [{"id": f"call_{i}", "type": "function",
                  "function": {"name": c.function.name, "arguments": json.dumps(c.function.arguments)}}
                 for i, c in enumerate(self.tool_calls or [])]
        extra = {"tool_calls": calls} if calls else {}
        return {"role": self.role, "content": self.content} | extra | (
            {"name": self.tool_name} if self.tool_name else {})


class OllamaChatRequest(_Strict):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[Name, Field(min_length=1)]
    keep_alive: KeepAlive = None
    messages: list[OllamaMessage] = Field(default_factory=list)
    """None loads the model (or, with keep_alive 0, unloads it)."""
    stream: bool = True
    options: OllamaOptions = Field(default_factory=OllamaOptions)
    tools: list[Tool] | None = None
    format: Literal["json", ""] | dict[str, Any] | None = None

    def texts(self) -> list[str]:
        return [m.content for m in self.messages]


class OllamaGenerateRequest(_Strict):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[Name, Field(min_length=1)]
    keep_alive: KeepAlive = None
    prompt: Text = ""
    """Empty loads the model (or, with keep_alive 0, unloads it)."""
    suffix: Text | None = None
    """Fill-in-the-middle: the prompt is the text before, `suffix` the text after."""
    system: Text | None = None
    stream: bool = True
    raw: bool = False
    options: OllamaOptions = Field(default_factory=OllamaOptions)
    format: Literal["json", ""] | dict[str, Any] | None = None

    def texts(self) -> list[str]:
        return [self.prompt, self.system or "", self.suffix or ""]
